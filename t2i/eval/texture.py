"""Texture styles of shapes-world objects: draw them at a chosen period, and read back which one an image shows.

The world's own held-out styles (t2i/embedded/world.py) repeat every 4 px at 64x64: one latent pixel of the
embedded VAE, which cannot carry them (a VAE round trip of a perfect striped render reads as solid). The texture
styles here repeat every `period` px (default 8, two latent pixels) so that a model can draw them at all:

- "striped": bars half a period wide; "dotted": discs half a period across; "checkered": squares half a period
  a side; "outlined": the world's own 3 px outline; "solid": the plain shape.

`read_texture` finds the largest object (pieces of one pattern joined), then matches its coverage against each
texture drawn over the object's silhouette, at every phase of the pattern (a model need not put the stripes where
the renderer did). A pattern must beat solid by TEXTURE_MARGIN, so blurred edges are not a texture.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

from t2i.embedded.world import ALL_COLOURS, IMAGE_SIZE, SUPERSAMPLE, paint, shape_mask

TEXTURES = ("solid", "outlined", "striped", "dotted", "checkered")
PATTERNS = ("striped", "dotted", "checkered")  # the repeating ones
DEFAULT_PERIOD = 8  # px at 64x64: two latent pixels of a 4x-downsampling VAE
FOREGROUND_DISTANCE = 70.0  # RGB distance from the background that counts as an object pixel (as the analyzer)
TEXTURE_MARGIN = 0.05  # IoU by which a texture must beat solid
OUTLINE_WIDTHS = (2, 3, 4)  # px; the world draws 3, a model's line comes out a pixel either way


def texture_pattern(texture: str, size: int = IMAGE_SIZE, period: int = DEFAULT_PERIOD,
                    phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Coverage (0..1) of a repeating texture over a size x size image, shifted by `phase` (x, y) pixels."""
    return np.roll(_unshifted_pattern(texture, size, period), phase[::-1], axis=(0, 1))


@lru_cache(maxsize=64)
def _unshifted_pattern(texture: str, size: int, period: int) -> np.ndarray:
    s = SUPERSAMPLE
    half = period * s / 2
    ys, xs = np.mgrid[0:size * s, 0:size * s].astype(np.float32) + 0.5
    xs, ys = xs % (period * s), ys % (period * s)
    if texture == "striped":
        big = xs < half
    elif texture == "dotted":
        big = (xs - half / 2) ** 2 + (ys - half / 2) ** 2 <= (half / 2) ** 2
    elif texture == "checkered":
        big = (xs < half) == (ys < half)
    else:
        raise ValueError(f"unknown pattern {texture!r}; choose one of {', '.join(PATTERNS)}")
    pattern = big.reshape(size, s, size, s).mean(axis=(1, 3))
    pattern.flags.writeable = False  # cached: shared by every caller
    return pattern


def paint_textured(image: Image.Image, shape: str, colour: str, cx: float, cy: float, extent: float,
                   texture: str, period: int = DEFAULT_PERIOD) -> None:
    """Draw one shape onto `image` in place, in one of TEXTURES (coordinates in the image's pixels)."""
    if texture in ("solid", "outlined"):
        paint(image, shape, colour, cx, cy, extent, texture)
        return
    coverage = np.asarray(shape_mask(shape, cx, cy, extent, image.width), dtype=np.float32) / 255
    coverage *= texture_pattern(texture, image.width, period * image.width // IMAGE_SIZE)
    mask = Image.fromarray(np.round(coverage * 255).astype("uint8"))
    image.paste(Image.new("RGB", image.size, ALL_COLOURS[colour]), (0, 0), mask)


@dataclass(frozen=True)
class TextureReading:
    texture: str  # one of TEXTURES, or "" when the image holds no object
    scores: dict  # texture -> best IoU of its template with the object's coverage


def _object(image: Image.Image, period: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The largest object's silhouette (pieces joined, holes filled) and its soft coverage (0..1 per pixel)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
                             pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    distance = np.linalg.norm(pixels - np.median(border, axis=0), axis=2)
    foreground = distance > FOREGROUND_DISTANCE
    if foreground.sum() < 6:
        return None
    # gaps of half a period join the pattern's pieces into one object
    joined = ndimage.binary_closing(foreground, np.ones((period // 2 + 1,) * 2, bool), border_value=0)
    labels, count = ndimage.label(ndimage.binary_fill_holes(joined | foreground))
    sizes = ndimage.sum(np.ones_like(labels), labels, range(1, count + 1))
    silhouette = labels == 1 + int(np.argmax(sizes))
    core = foreground & silhouette
    full = np.median(distance[core][distance[core] >= np.percentile(distance[core], 50)])
    return silhouette, np.clip(distance / full, 0, 1) * silhouette


def _iou(template: np.ndarray, coverage: np.ndarray) -> float:
    return float(np.minimum(template, coverage).sum() / max(np.maximum(template, coverage).sum(), 1e-6))


def read_texture(image: Image.Image, period: int = DEFAULT_PERIOD) -> TextureReading:
    """Which of TEXTURES the largest object in a 64x64 shapes-world image is drawn in."""
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    found = _object(image, period)
    if found is None:
        return TextureReading("", {})
    silhouette, coverage = found
    box = ndimage.find_objects(silhouette.astype(int))[0]  # every template is 0 outside the silhouette
    silhouette, coverage = silhouette[box], coverage[box]
    solid = silhouette.astype(np.float32)
    scores = {"solid": _iou(solid, coverage)}
    scores["outlined"] = max(_iou(solid - ndimage.binary_erosion(silhouette, iterations=w), coverage)
                             for w in OUTLINE_WIDTHS)
    for texture in PATTERNS:
        patterns = [texture_pattern(texture, IMAGE_SIZE, period, (x, y)) for y in range(period) for x in range(period)
                    if texture != "striped" or y == 0]
        if texture == "striped":  # stripes across count too
            patterns += [p.T for p in patterns]
        scores[texture] = max(_iou(solid * p[box], coverage) for p in patterns)
    best = max(TEXTURES[1:], key=scores.get)
    return TextureReading(best if scores[best] > scores["solid"] + TEXTURE_MARGIN else "solid", scores)
