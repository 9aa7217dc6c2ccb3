"""Read a shapes-world image back into a scene: background, and each object's shape, colour, size, position.

Background: the median colour of the border. Objects: connected regions that differ from it.
Colour: nearest named colour to the region's core pixels. Size and position: from the region's box.
Shape: the best intersection-over-union among templates rendered at the region's box.
Style (solid, outlined, striped, dotted): the same matching against templates drawn in each style by the
world's own painter; a patterned object is many small pieces, so pieces a pixel or two apart are grouped first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

from t2i.embedded.world import (
    ALL_COLOURS, BACKGROUND_ONLY_COLOURS, COLOURS, GRID_CENTRES, HELD_OUT_COLOURS, HELD_OUT_STYLES, IMAGE_SIZE,
    POSITION_AT, SHAPES, SIZES, STYLES, paint, shape_mask,
)

FOREGROUND_DISTANCE = 70.0  # RGB distance from the background that counts as an object pixel
MIN_AREA = 6  # pixels; smaller regions are noise
OBJECT_COLOURS = {**COLOURS, **HELD_OUT_COLOURS}
BACKGROUND_COLOURS = {**COLOURS, **BACKGROUND_ONLY_COLOURS, **HELD_OUT_COLOURS}
ALL_STYLES = STYLES + HELD_OUT_STYLES
TEMPLATE_BLURS = (0.0, 0.7, 1.2)  # Gaussian sigmas, in pixels at 64x64
STYLE_MARGIN = 0.05  # a pattern style must beat solid by this much IoU: blurred model edges are not a style


@dataclass(frozen=True)
class DetectedObject:
    shape: str
    colour: str
    size: str
    position: str
    centre: tuple[float, float]
    area: int
    shape_score: float  # IoU with the best template
    style: str = "solid"  # solid, outlined, striped or dotted


@dataclass(frozen=True)
class Analysis:
    background: str
    background_rgb: tuple[int, int, int]
    objects: tuple[DetectedObject, ...]  # largest first


def nearest_colour(rgb: np.ndarray, palette: dict) -> str:
    """Name of the palette colour nearest to `rgb`."""
    names = list(palette)
    table = np.array([palette[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(np.linalg.norm(table - rgb[None, :], axis=1)))]


def _classify(value: float, centres: list[float]) -> int:
    return int(np.argmin([abs(value - c) for c in centres]))


@lru_cache(maxsize=None)
def _template_box_ratio(shape: str) -> tuple[float, float, float, float]:
    """Box of a template relative to its nominal extent: (width, height, centre dx, centre dy) per unit."""
    extent = 40.0
    mask = np.asarray(shape_mask(shape, 32, 32, extent)) > 127
    ys, xs = np.nonzero(mask)
    w, h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    dx, dy = (xs.max() + xs.min()) / 2 - 31.5, (ys.max() + ys.min()) / 2 - 31.5
    return w / extent, h / extent, dx / extent, dy / extent


def _soft_iou(template: np.ndarray, coverage: np.ndarray) -> float:
    return float(np.minimum(template, coverage).sum() / max(np.maximum(template, coverage).sum(), 1e-6))


def _best_shape(coverage: np.ndarray, box: tuple[int, int, int, int]) -> tuple[str, float, float]:
    """Best-matching shape, its soft IoU with `coverage` (0..1 per pixel), and its template's nominal extent.

    Soft coverage rather than a thresholded mask: small shapes drawn by a model have blurred edges,
    and a hard threshold turns a small star or heart into a blob. Each template is also tried blurred
    (TEMPLATE_BLURS), so a small ring whose hole came out half filled still matches a blurred ring better
    than a disc; a sharp render matches the sharp template best.
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0 + 1, y1 - y0 + 1
    scores, extents = {}, {}
    for shape in SHAPES:
        rw, rh, rdx, rdy = _template_box_ratio(shape)
        extent = extents[shape] = max(w / rw, h / rh)
        cx = (x0 + x1) / 2 + 0.5 - rdx * extent
        cy = (y0 + y1) / 2 + 0.5 - rdy * extent
        template = np.asarray(shape_mask(shape, cx, cy, extent, coverage.shape[0]), dtype=np.float32) / 255
        scores[shape] = max(_soft_iou(ndimage.gaussian_filter(template, sigma) if sigma else template, coverage)
                            for sigma in TEMPLATE_BLURS)
    best = max(scores, key=scores.get)
    return best, float(scores[best]), extents[best]


def _styled_template(shape: str, style: str, cx: float, cy: float, extent: float, size: int) -> np.ndarray:
    """Coverage (0..1) of a shape drawn in a style, by the same painter that renders the world."""
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    paint(canvas, shape, "white", cx, cy, extent, style)
    return np.asarray(canvas, dtype=np.float32)[..., 0] / ALL_COLOURS["white"][0]


def _best_style(coverage: np.ndarray, box: tuple[int, int, int, int], solid_shape: str,
                solid_score: float) -> tuple[str, str]:
    """The (style, shape) whose styled template best matches `coverage`; solid unless a pattern clearly wins."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0 + 1, y1 - y0 + 1
    best = ("solid", solid_shape, solid_score + STYLE_MARGIN)
    for shape in SHAPES:
        rw, rh, rdx, rdy = _template_box_ratio(shape)
        box_extent = max(w / rw, h / rh)
        for style in HELD_OUT_STYLES:
            # a 3 px outline matches only at the right extent, and a thresholded box runs up to 1.5 px wide
            for extent in (box_extent - 1.5, box_extent - 1, box_extent - 0.5, box_extent) if style == "outlined" \
                    else (box_extent,):
                cx = (x0 + x1) / 2 + 0.5 - rdx * extent
                cy = (y0 + y1) / 2 + 0.5 - rdy * extent
                template = _styled_template(shape, style, cx, cy, extent, coverage.shape[0])
                score = _soft_iou(template, coverage)
                if score > best[2]:
                    best = (style, shape, float(score))
    return best[0], best[1]


def _group_pieces(foreground: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Foreground with same-coloured pieces up to 2 px apart joined (stripes and dots are 2 px apart).

    Joined per colour: two objects of different colours side by side must stay apart.
    """
    pieces, count = ndimage.label(foreground)
    if count == 0:  # a blank image: nothing to group
        return foreground
    names = list(OBJECT_COLOURS)
    table = np.array([OBJECT_COLOURS[n] for n in names], dtype=np.float32)
    nearest = np.argmin(np.linalg.norm(pixels[..., None, :] - table[None, None], axis=3), axis=2)
    grouped = foreground.copy()
    piece_colour = ndimage.labeled_comprehension(nearest, pieces, range(1, count + 1),
                                                 lambda v: np.bincount(v).argmax(), int, -1)
    for colour in set(piece_colour.tolist()):
        same = np.isin(pieces, 1 + np.flatnonzero(piece_colour == colour))
        grouped |= ndimage.binary_closing(same, np.ones((3, 3), bool))
    return grouped


def _split_by_colour(mask: np.ndarray, pixels: np.ndarray, core: np.ndarray) -> list[np.ndarray]:
    """Split a region where objects of different colours touch into one mask per colour."""
    names = list(OBJECT_COLOURS)
    table = np.array([OBJECT_COLOURS[n] for n in names], dtype=np.float32)
    nearest = np.argmin(np.linalg.norm(pixels[core][:, None, :] - table[None], axis=2), axis=1)
    counts = np.bincount(nearest, minlength=len(names))
    major = [i for i in np.argsort(-counts) if counts[i] >= max(12, 0.15 * core.sum())]
    if len(major) < 2:
        return [mask]
    owner = np.argmin(np.linalg.norm(pixels[..., None, :] - table[major][None, None], axis=3), axis=2)
    parts = []
    for k in range(len(major)):
        labels, count = ndimage.label(mask & (owner == k))
        if count:
            sizes = ndimage.sum(np.ones_like(labels), labels, range(1, count + 1))
            parts.append(labels == 1 + int(np.argmax(sizes)))
    return parts


def analyze(image: Image.Image) -> Analysis:
    """Recover the scene drawn in a shapes-world image."""
    image = image.convert("RGB")
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    # plain 0-255 RGB, measured against the world's colour table: not VaeImageProcessor's [-1, 1] model input
    pixels = np.asarray(image, dtype=np.float32)
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
                             pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    bg_rgb = np.median(border, axis=0)
    distance = np.linalg.norm(pixels - bg_rgb, axis=2)
    foreground = distance > FOREGROUND_DISTANCE
    labels, count = ndimage.label(_group_pieces(foreground, pixels))
    objects = []
    unit = IMAGE_SIZE / 64
    size_edges = [SIZES[s] * unit for s in SIZES]
    grid = [g * IMAGE_SIZE - 0.5 for g in GRID_CENTRES]
    regions = []
    for index in range(1, count + 1):
        region = (labels == index) & foreground
        if region.sum() >= MIN_AREA:
            regions += _split_by_colour(region, pixels, region & (distance >= np.percentile(distance[region], 50)))
    for mask in regions:
        area = int(mask.sum())
        if area < MIN_AREA:
            continue
        ys, xs = np.nonzero(mask)
        box = (xs.min(), ys.min(), xs.max(), ys.max())
        core = mask & (distance >= np.percentile(distance[mask], 50))
        colour = nearest_colour(np.median(pixels[core], axis=0), OBJECT_COLOURS)
        coverage = np.clip(distance / np.median(distance[core]), 0, 1) * ndimage.binary_dilation(mask)
        shape, score, extent = _best_shape(coverage, box)
        style, shape = _best_style(coverage, box, shape, score)
        size = list(SIZES)[_classify(extent, size_edges)]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        position = POSITION_AT[(_classify(cx, grid), _classify(cy, grid))]
        objects.append(DetectedObject(shape, colour, size, position, (float(cx), float(cy)), area, score, style))
    objects.sort(key=lambda o: -o.area)
    background = nearest_colour(bg_rgb, BACKGROUND_COLOURS)
    return Analysis(background, tuple(int(v) for v in bg_rgb), tuple(objects))


def relation_holds(first: DetectedObject, second: DetectedObject, relation: str) -> bool:
    """Whether `first <relation> second` holds between two detected objects' centres."""
    (ax, ay), (bx, by) = first.centre, second.centre
    margin = 4 * IMAGE_SIZE / 64
    return {"left of": ax < bx - margin, "right of": ax > bx + margin,
            "above": ay < by - margin, "below": ay > by + margin}[relation]


def named_colour_share(image: Image.Image, colour_names: list[str], tolerance: float = 40.0) -> float:
    """Fraction of pixels within `tolerance` (RGB distance) of any of the named colours."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    targets = np.array([ALL_COLOURS[c] for c in colour_names], dtype=np.float32)
    distance = np.linalg.norm(pixels[:, :, None, :] - targets[None, None], axis=3).min(axis=2)
    return float((distance <= tolerance).mean())
