"""Resolution handling: aspect-ratio buckets (or a centre-cropped square) for training images.

Each image goes to the bucket whose aspect ratio is nearest its own, is scaled to cover the bucket and
centre-cropped; a batch is always drawn from one bucket, so no image is squashed or padded.
"""

from __future__ import annotations

import math
from collections import defaultdict

from PIL import Image

ASPECTS = (1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9, 9 / 16)


def bucket_sizes(resolution: int, multiple: int) -> list[tuple[int, int]]:
    """(width, height) per aspect ratio with about resolution² pixels, sides a multiple of `multiple`."""
    sizes = []
    for aspect in ASPECTS:
        width = max(multiple, round(resolution * math.sqrt(aspect) / multiple) * multiple)
        height = max(multiple, round(resolution / math.sqrt(aspect) / multiple) * multiple)
        if (width, height) not in sizes:
            sizes.append((width, height))
    return sizes


def _covering(image: Image.Image, size: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) `image` is scaled to so that it covers `size`."""
    width, height = size
    scale = max(width / image.width, height / image.height)
    return max(width, round(image.width * scale)), max(height, round(image.height * scale))


def crop_offset(image: Image.Image, size: tuple[int, int]) -> tuple[int, int]:
    """The (left, top) of the centre crop `fit` takes, in the scaled image (SDXL's crop conditioning)."""
    scaled_width, scaled_height = _covering(image, size)
    return (scaled_width - size[0]) // 2, (scaled_height - size[1]) // 2


def fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale `image` to cover `size` and crop the centre."""
    width, height = size
    scale = max(width / image.width, height / image.height)
    scaled = image.resize(_covering(image, size), Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    left, top = crop_offset(image, size)
    return scaled.crop((left, top, left + width, top + height))


def assign_buckets(images: list[Image.Image], resolution: int, multiple: int,
                   use_buckets: bool) -> dict[tuple[int, int], list[int]]:
    """Image indices per (width, height); without buckets everything is one centre-cropped square."""
    if not use_buckets:
        return {(resolution, resolution): list(range(len(images)))}
    sizes = bucket_sizes(resolution, multiple)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        aspect = math.log(image.width / image.height)
        groups[min(sizes, key=lambda s: abs(math.log(s[0] / s[1]) - aspect))].append(index)
    return dict(groups)
