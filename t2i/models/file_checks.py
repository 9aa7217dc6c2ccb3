"""Check a user's .safetensors file's header before any loader touches it.

safetensors itself never runs code, but a hostile or truncated file can still claim absurd sizes;
we refuse those with a clear message instead of letting a loader fail deep inside.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from t2i.request import RequestError

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
MAX_HEADER_BYTES = 100 << 20


def read_safetensors_header(path: Path, max_bytes: int, max_header_bytes: int = MAX_HEADER_BYTES) -> dict:
    """The parsed header of `path` (tensor entries and `__metadata__`), after structural checks."""
    size = path.stat().st_size
    if size > max_bytes:
        raise RequestError(f"{path.name} is {size >> 20} MB; the limit is {max_bytes >> 20} MB")
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise RequestError(f"{path.name} is not a safetensors file (too short)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > size - 8:
            raise RequestError(f"{path.name} is not a valid safetensors file (bad header length)")
        if header_len > max_header_bytes:  # checked before reading: a huge header costs time and memory
            raise RequestError(f"{path.name}: its header is {header_len >> 20} MB; the limit is "
                               f"{max_header_bytes >> 20} MB")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(f"{path.name} is not a valid safetensors file (unreadable header)") from exc
    if not isinstance(header, dict):
        raise RequestError(f"{path.name} is not a valid safetensors file (header is not a table)")
    data_size = size - 8 - header_len
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if (not isinstance(entry, dict) or entry.get("dtype") not in DTYPE_BYTES
                or not isinstance(entry.get("shape"), list)
                or not all(isinstance(d, int) and d >= 0 for d in entry["shape"])):
            raise RequestError(f"{path.name}: tensor {name!r} has an invalid entry")
        start, end = entry.get("data_offsets", (None, None))
        expected = math.prod(entry["shape"]) * DTYPE_BYTES[entry["dtype"]]
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= data_size
                and end - start == expected):
            raise RequestError(f"{path.name}: tensor {name!r} points outside the file or has the wrong size")
    return header


def check_safetensors_file(path: Path, max_bytes: int) -> list[str]:
    """Tensor names in a checked safetensors file."""
    return [k for k in read_safetensors_header(path, max_bytes) if k != "__metadata__"]


# GGUF: 4-byte magic, uint32 version, uint64 tensor and key/value counts, then the key/values and tensor infos;
# each key/value takes at least 12 bytes (key length, value type) and each tensor info at least 24
GGUF_MIN_KV_BYTES, GGUF_MIN_TENSOR_INFO_BYTES = 12, 24


def read_gguf_header(path: Path, max_bytes: int) -> dict:
    """{"architecture": str | None, "tensors": {name: (shape, type name)}} of a GGUF file, after checking its
    magic, version, counts and that every tensor's data lies inside the file; no tensor data is read."""
    import gguf  # imported here: only GGUF files need it

    size = path.stat().st_size
    if size > max_bytes:
        raise RequestError(f"{path.name} is {size >> 20} MB; the limit is {max_bytes >> 20} MB")
    with open(path, "rb") as handle:
        prefix = handle.read(24)
    if len(prefix) < 24 or prefix[:4] != b"GGUF":
        raise RequestError(f"{path.name} is not a GGUF file (no GGUF magic)")
    version, tensor_count, kv_count = struct.unpack("<IQQ", prefix[4:])
    if version not in (2, 3):
        raise RequestError(f"{path.name}: GGUF version {version} is not supported (2 or 3)")
    # checked before parsing: corrupt counts would otherwise drive the reader through billions of entries
    if tensor_count * GGUF_MIN_TENSOR_INFO_BYTES + kv_count * GGUF_MIN_KV_BYTES > size - 24:
        raise RequestError(f"{path.name} is not a valid GGUF file (its counts do not fit in the file)")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, KeyError, OverflowError, UnicodeDecodeError) as exc:
        raise RequestError(f"{path.name} is not a valid GGUF file (unreadable header: {exc})") from exc
    tensors = {}
    for tensor in reader.tensors:
        if tensor.data_offset + int(tensor.n_bytes) > size:
            raise RequestError(f"{path.name}: tensor {tensor.name!r} points outside the file")
        tensors[tensor.name] = (tuple(int(d) for d in reversed(tensor.shape)), tensor.tensor_type.name)
    field = reader.get_field("general.architecture")
    architecture = bytes(field.parts[field.data[0]]).decode("utf-8", "replace") if field is not None else None
    return {"architecture": architecture, "tensors": tensors}


def check_gguf_file(path: Path, max_bytes: int) -> list[str]:
    """Tensor names in a checked GGUF file."""
    return list(read_gguf_header(path, max_bytes)["tensors"])
