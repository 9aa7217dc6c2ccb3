"""Uploaded images, decoded under the size caps before anything else touches them."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from t2i.request import RequestError


def load_image_file(source: str | Path | bytes, max_bytes: int, max_pixels: int, what: str = "image") -> Image.Image:
    """Decode an uploaded image (a file, or bytes an API received) fully, refusing oversized files, decompression
    bombs and corrupt data."""
    size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
    if size > max_bytes:
        raise RequestError(f"{what} is {size >> 20} MB; the limit is {max_bytes >> 20} MB")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source)) as image:
            if image.width * image.height > max_pixels:
                raise RequestError(f"{what} is {image.width}x{image.height}; the limit is {max_pixels} pixels")
            image.load()
            return image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, RequestError):
            raise
        raise RequestError(f"{what} could not be read as an image ({type(exc).__name__})") from exc
