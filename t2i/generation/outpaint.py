"""Outpainting: extend the init image's canvas on chosen sides and repaint only the new area.

The new area starts as the original's edge pixels stretched outwards, so the model sees the colours that meet it;
its mask is white (repaint) and the original area black (keep). A mask given with the init image is carried onto
the larger canvas, so outpainting and inpainting can be combined.
"""

from __future__ import annotations

from PIL import Image

SIDES = ("left", "right", "top", "bottom")


def outpaint_sides(request) -> dict[str, int]:
    """The pixels `request` adds on each side (`outpaint_left` ...), zeros included."""
    return {side: getattr(request, f"outpaint_{side}") for side in SIDES}


def canvas_size(request) -> tuple[int, int] | None:
    """The extended canvas's (width, height), or None when the request does not outpaint."""
    sides = outpaint_sides(request)
    if request.init_image is None or not any(sides.values()):
        return None
    width, height = request.init_image.size
    return width + sides["left"] + sides["right"], height + sides["top"] + sides["bottom"]


def extend_canvas(image: Image.Image, mask: Image.Image | None, left: int, right: int, top: int,
                  bottom: int) -> tuple[Image.Image, Image.Image]:
    """`image` on a canvas larger by the given pixels on each side, the new area filled with the nearest edge
    pixels, and the mask of what to repaint: the new area plus `mask` (if any) where the original was."""
    image = image.convert("RGB")
    width, height = image.size
    canvas = Image.new("RGB", (width + left + right, height + top + bottom))
    canvas.paste(image, (left, top))
    # stretch each edge row/column outwards (corners take the corner pixel)
    if left:
        canvas.paste(image.crop((0, 0, 1, height)).resize((left, height)), (0, top))
    if right:
        canvas.paste(image.crop((width - 1, 0, width, height)).resize((right, height)), (left + width, top))
    row = canvas.crop((0, top, canvas.width, top + 1))
    if top:
        canvas.paste(row.resize((canvas.width, top)), (0, 0))
    row = canvas.crop((0, top + height - 1, canvas.width, top + height))
    if bottom:
        canvas.paste(row.resize((canvas.width, bottom)), (0, top + height))
    repaint = Image.new("L", canvas.size, 255)
    repaint.paste(mask.convert("L").resize((width, height), Image.Resampling.NEAREST) if mask is not None
                  else Image.new("L", (width, height), 0), (left, top))
    return canvas, repaint

