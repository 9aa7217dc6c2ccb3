"""file_sha256 / files_sha256 give the digests the old block-by-block loops gave (model and LoRA hashes in users' PNGs)."""

import hashlib

from t2i.models.file_hash import file_sha256, files_sha256


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(bytes(range(256)) * 9000)  # over 2 MiB: several blocks
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_files_sha256_is_the_digest_of_the_concatenation(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"unet" * 100_000)
    second.write_bytes(b"vae")
    assert files_sha256([first, second]) == hashlib.sha256(first.read_bytes() + second.read_bytes()).hexdigest()
    assert files_sha256([]) == hashlib.sha256().hexdigest()
