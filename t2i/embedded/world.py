"""The shapes world: scenes of coloured shapes, rendered from a spec and described in words.

The embedded model is trained on this world and the fidelity benchmark measures against it.
A scene is one or two objects on a flat background. Defaults that a caption may leave out are
fixed conventions the model learns: no background named means white, no size means medium,
no position means center.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # draw at 4x and downsample, for clean anti-aliased edges

COLOURS = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 165, 60),
    "blue": (35, 75, 225),
    "purple": (135, 50, 185),
    "pink": (250, 135, 195),
    "brown": (125, 75, 30),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
}
BACKGROUND_ONLY_COLOURS = {"gray": (128, 128, 128)}
# Held back from base training on purpose: the trainer teaches them with LoRA/DreamBooth.
HELD_OUT_COLOURS = {"teal": (0, 150, 150), "maroon": (115, 10, 45)}
ALL_COLOURS = {**COLOURS, **BACKGROUND_ONLY_COLOURS, **HELD_OUT_COLOURS}

SHAPES = ("circle", "square", "triangle", "star", "heart", "ring")
SIZES = {"small": 11, "medium": 17, "large": 25}  # extent of the shape's box, in pixels at 64x64
POSITIONS = {
    "top left": (0, 0), "top": (1, 0), "top right": (2, 0),
    "left": (0, 1), "center": (1, 1), "right": (2, 1),
    "bottom left": (0, 2), "bottom": (1, 2), "bottom right": (2, 2),
}
POSITION_AT = {cell: name for name, cell in POSITIONS.items()}  # (column, row) -> position name
GRID_CENTRES = (0.2, 0.5, 0.8)  # fraction of the image; keeps large shapes inside at the corners
STYLES = ("solid",)
HELD_OUT_STYLES = ("outlined", "striped", "dotted")
RELATIONS = ("left of", "right of", "above", "below")
DEFAULT_BACKGROUND, DEFAULT_SIZE, DEFAULT_POSITION = "white", "medium", "center"


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    colour: str
    size: str = DEFAULT_SIZE
    position: str = DEFAULT_POSITION
    style: str = "solid"


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeObject, ...]
    background: str = DEFAULT_BACKGROUND
    relation: str | None = None  # for two objects: objects[0] <relation> objects[1]


def position_centre(position: str, size: int = IMAGE_SIZE) -> tuple[float, float]:
    """Pixel centre of a named grid position."""
    col, row = POSITIONS[position]
    return GRID_CENTRES[col] * size, GRID_CENTRES[row] * size


def shape_polygon(shape: str, cx: float, cy: float, extent: float) -> list[tuple[float, float]]:
    """Outline of a shape centred on (cx, cy) whose box is `extent` wide, as a polygon."""
    r = extent / 2
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle) + r * 0.1))
        return points
    if shape == "heart":
        points = []
        for k in range(64):
            t = 2 * math.pi * k / 64
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            points.append((cx + x / 16.5 * r, cy + (y + 2.5) / 15.5 * r))
        return points
    if shape in ("circle", "ring"):
        return [(cx + r * math.cos(2 * math.pi * k / 96), cy + r * math.sin(2 * math.pi * k / 96)) for k in range(96)]
    raise ValueError(f"unknown shape {shape!r}")


def shape_mask(shape: str, cx: float, cy: float, extent: float, size: int = IMAGE_SIZE) -> Image.Image:
    """Anti-aliased coverage mask ('L') of one shape in a size x size image."""
    s = SUPERSAMPLE
    big = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(big)
    draw.polygon([(x * s, y * s) for x, y in shape_polygon(shape, cx, cy, extent)], fill=255)
    if shape == "ring":
        inner = extent * 0.5
        draw.polygon([(x * s, y * s) for x, y in shape_polygon("circle", cx, cy, inner)], fill=0)
    return big.resize((size, size), Image.Resampling.BOX)


def _style_pattern(style: str, size: int) -> Image.Image | None:
    """Mask that keeps part of a shape for the held-out render styles (None for solid)."""
    if style == "solid":
        return None
    s = SUPERSAMPLE
    big = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(big)
    if style == "striped":
        for x in range(0, size * s, 4 * s):
            draw.rectangle([x, 0, x + 2 * s - 1, size * s], fill=255)
    elif style == "dotted":
        for y in range(0, size * s, 4 * s):
            for x in range(0, size * s, 4 * s):
                draw.ellipse([x, y, x + 2 * s, y + 2 * s], fill=255)
    else:
        raise ValueError(f"unknown style {style!r}")
    return big.resize((size, size), Image.Resampling.BOX)


def paint(image: Image.Image, shape: str, colour: str, cx: float, cy: float, extent: float,
          style: str = "solid") -> None:
    """Draw one shape onto `image` in place (all coordinates in the image's pixels)."""
    size = image.width
    mask = shape_mask(shape, cx, cy, extent, size)
    if style == "outlined":
        inner = shape_mask(shape, cx, cy, extent - 6 * size / IMAGE_SIZE, size)
        mask = Image.fromarray(_subtract(mask, inner))
    else:
        pattern = _style_pattern(style, size)
        if pattern is not None:
            mask = Image.fromarray(_multiply(mask, pattern))
    image.paste(Image.new("RGB", image.size, ALL_COLOURS[colour]), (0, 0), mask)


def render(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw a scene as an RGB image."""
    image = Image.new("RGB", (size, size), ALL_COLOURS[scene.background])
    for obj in scene.objects:
        cx, cy = position_centre(obj.position, size)
        paint(image, obj.shape, obj.colour, cx, cy, SIZES[obj.size] * size / IMAGE_SIZE, obj.style)
    return image


def busy_image(rng: random.Random, styles: tuple[str, ...] = STYLES) -> Image.Image:
    """Several shapes of any colour, size and place: dense edges for training the autoencoder."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), ALL_COLOURS[rng.choice(tuple(ALL_COLOURS))])
    for _ in range(rng.randint(1, 5)):
        paint(image, rng.choice(SHAPES), rng.choice(tuple(ALL_COLOURS)), rng.uniform(4, IMAGE_SIZE - 4),
              rng.uniform(4, IMAGE_SIZE - 4), rng.uniform(8, 30), rng.choice(styles))
    return image


def _subtract(a: Image.Image, b: Image.Image) -> np.ndarray:
    return np.clip(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16), 0, 255).astype("uint8")


def _multiply(a: Image.Image, b: Image.Image) -> np.ndarray:
    return (np.asarray(a, dtype=np.uint16) * np.asarray(b, dtype=np.uint16) // 255).astype("uint8")


def random_scene(rng: random.Random, two_objects: bool = False, colours=tuple(COLOURS),
                 styles=STYLES) -> Scene:
    """Draw a random scene; two-object scenes place the objects in different cells of one row or column."""
    if not two_objects:
        obj = ShapeObject(rng.choice(SHAPES), rng.choice(colours), rng.choice(tuple(SIZES)),
                          rng.choice(tuple(POSITIONS)), rng.choice(styles))
        background = rng.choice([c for c in (*COLOURS, *BACKGROUND_ONLY_COLOURS) if c != obj.colour])
        return Scene((obj,), background)
    relation = rng.choice(RELATIONS)
    line = rng.randrange(3)
    a, b = rng.sample(range(3), 2)
    first, second = (a, b) if a < b else (b, a)  # first is left of / above second
    if relation in ("right of", "below"):
        first, second = second, first
    if relation in ("left of", "right of"):
        cells = [(first, line), (second, line)]
    else:
        cells = [(line, first), (line, second)]
    colour_a, colour_b = rng.sample(colours, 2)
    objects = tuple(
        ShapeObject(rng.choice(SHAPES), colour, rng.choice(("small", "medium")), POSITION_AT[cell], rng.choice(styles))
        for colour, cell in zip((colour_a, colour_b), cells)
    )
    background = rng.choice([c for c in (*COLOURS, *BACKGROUND_ONLY_COLOURS) if c not in (colour_a, colour_b)])
    return Scene(objects, background, relation)


def spread_apart(scene: Scene) -> Scene:
    """`scene` with a pair's objects moved to the two ends of their row or column, in the same order.

    In `random_scene` a pair may sit in neighbouring cells, so "left of" alone does not say which cell either
    object takes; at the two ends it does, and the denoiser can read each object's place from the caption."""
    if len(scene.objects) != 2:
        return scene
    axis = 0 if scene.relation in ("left of", "right of") else 1
    cells = [list(POSITIONS[o.position]) for o in scene.objects]
    first_low = cells[0][axis] < cells[1][axis]
    cells[0][axis], cells[1][axis] = (0, 2) if first_low else (2, 0)
    objects = tuple(replace(o, position=POSITION_AT[tuple(c)]) for o, c in zip(scene.objects, cells))
    return replace(scene, objects=objects)
