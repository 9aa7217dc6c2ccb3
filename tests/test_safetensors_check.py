"""User model files: only well-formed safetensors get past the header check."""

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from t2i.request import RequestError
from t2i.models.file_checks import check_safetensors_file


def _write(path, header: dict, data: bytes = b""):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_a_real_file_passes(tmp_path):
    path = tmp_path / "ok.safetensors"
    save_file({"a.weight": torch.zeros(2, 3), "b": torch.ones(4, dtype=torch.float16)}, str(path))
    assert sorted(check_safetensors_file(path, 1 << 20)) == ["a.weight", "b"]


@pytest.mark.parametrize("header, data, message", [
    ({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "points outside"),
    ({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, b"\0" * 16, "wrong size"),
    ({"x": {"dtype": "PICKLE", "shape": [1], "data_offsets": [0, 1]}}, b"\0", "invalid entry"),
    ({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "invalid entry"),
    ([1, 2, 3], b"", "not a table"),
])
def test_malformed_headers_are_refused(tmp_path, header, data, message):
    with pytest.raises(RequestError, match=message):
        check_safetensors_file(_write(tmp_path / "bad.safetensors", header, data), 1 << 20)


def test_garbage_and_oversized_files_are_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(RequestError, match="bad header length"):
        check_safetensors_file(junk, 1 << 20)
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\1\2")
    with pytest.raises(RequestError, match="too short"):
        check_safetensors_file(short, 1 << 20)
    with pytest.raises(RequestError, match="the limit is"):
        check_safetensors_file(junk, 10)
