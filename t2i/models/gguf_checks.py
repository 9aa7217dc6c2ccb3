"""Check a user's GGUF file before any loader touches it: size, magic, and a header that gguf's own reader parses.

GGUF holds no code, but a truncated or hostile file can claim tensors outside itself; gguf's reader checks each
tensor's extent against the file while it parses the header, and we refuse what it refuses with a clear message.
"""

from __future__ import annotations

from pathlib import Path

from t2i.request import RequestError

GGUF_MAGIC = b"GGUF"


def read_gguf_tensor_names(path: Path, max_bytes: int) -> list[str]:
    """The tensor names of a checked GGUF file."""
    import gguf

    size = path.stat().st_size
    if size > max_bytes:
        raise RequestError(f"{path.name} is {size >> 20} MB; the limit is {max_bytes >> 20} MB")
    with open(path, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise RequestError(f"{path.name} is not a GGUF file (no GGUF magic)")
    try:
        reader = gguf.GGUFReader(path)
        names = [tensor.name for tensor in reader.tensors]
    except (ValueError, IndexError, KeyError, OverflowError, OSError) as exc:
        raise RequestError(f"{path.name} is not a valid GGUF file (unreadable header: "
                           f"{str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from exc
    if not names:
        raise RequestError(f"{path.name} holds no tensors")
    return names
