"""The VAE ceiling tool: the shipped VAE's round trip of benchmark scenes keeps colours and places."""

import pytest

from t2i.eval.vae_roundtrip import load_vae, main, measure
from t2i.settings import EMBEDDED_MODEL_DIR


def test_shipped_vae_round_trip_keeps_colour_and_position():
    results = measure(load_vae(EMBEDDED_MODEL_DIR), n_single=24, n_pairs=8)
    assert results["colour"] == 1.0 and results["position"] == 1.0
    assert results["shape_large"] >= 0.9  # large shapes survive a 4x VAE; small ones lose corners


def test_a_folder_without_a_vae_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no VAE at"):
        main(["--vae", str(tmp_path)])
