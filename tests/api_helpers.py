"""Helpers for the REST API tests (tests/test_api_*.py): a Studio of the tests' own, PNG chunk surgery, base64
images, and waiting on a condition."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import struct
import time
import zlib

from PIL import Image

from t2i.studio import Studio

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_studio(settings, engine, data_dir, **overrides) -> Studio:
    """A Studio on the shared engine with its own data folder, no rate limit and a 1 MB upload cap by default."""
    values = {"data_dir": data_dir, "model_dir": data_dir / "models", "lora_dir": data_dir / "loras",
              "rate_limit_per_minute": 0, "max_upload_mb": 1, **overrides}
    return Studio(dataclasses.replace(settings, **values), engine)


def without_chunk(png: bytes, key: str) -> bytes:
    """`png` with its text chunk named `key` removed, every other byte as it was."""
    assert png.startswith(PNG_SIGNATURE)
    out, at = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        end = at + 12 + length
        data = png[at + 8:at + 8 + length]
        if not (kind in (b"tEXt", b"iTXt", b"zTXt") and data.split(b"\0", 1)[0] == key.encode()):
            out.append(png[at:end])
        at = end
    return b"".join(out)


def bomb_png(width: int, height: int) -> bytes:
    """A small PNG whose header declares `width` x `height` grey pixels (its data holds a few rows only)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 8, 9)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(image: Image.Image) -> str:
    """An image as webuiapi sends it: a data:image/png;base64, URL."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def decoded(images: list[str]) -> list[bytes]:
    return [base64.b64decode(image) for image in images]


async def until(check, timeout: float = 120.0):
    """Await `check()` (a coroutine function) until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, "the condition never came true"
        await asyncio.sleep(0.02)
    return value
