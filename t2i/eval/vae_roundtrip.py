"""The VAE's ceiling on the benchmark: encode and decode the benchmark's own scenes, rendered perfectly.

    python -m t2i.eval.vae_roundtrip --vae t2i/embedded/model

A denoiser draws in the VAE's latent space, so it can score no better than the VAE's round trip of a perfect
picture. This scores that round trip with the benchmark's scenes and scorers: shape accuracy per size (small
shapes lose their corners first) and both objects of a pair right. Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from t2i.embedded.world import SIZES, render
from t2i.eval.benchmark import pair_cases, score_pair, score_single, single_object_cases


def load_vae(path: Path):
    """An AutoencoderKL from a VAE folder or from a model folder holding `vae/`."""
    from diffusers import AutoencoderKL

    folder = path / "vae" if (path / "vae" / "config.json").exists() else path
    if not (folder / "config.json").exists():
        raise SystemExit(f"error: no VAE at {path} (expected config.json there or in {path / 'vae'})")
    return AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32).eval()


@torch.no_grad()
def round_trip(vae, images):
    """Images through encode (posterior mode) and decode, back as PIL images."""
    from PIL import Image

    from t2i.embedded.training.train_model import images_to_tensor

    decoded = vae.decode(vae.encode(images_to_tensor(images)).latent_dist.mode()).sample
    pixels = ((decoded.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(p) for p in pixels]


def measure(vae, n_single: int = 200, n_pairs: int = 100) -> dict:
    """Benchmark scores of the VAE's round trip of the held-out scenes."""
    singles = single_object_cases(n_single)
    pairs = pair_cases(n_pairs)
    single_images = round_trip(vae, [render(c.scene) for c in singles])
    pair_images = round_trip(vae, [render(c.scene) for c in pairs])
    scores = [score_single(c, im) for c, im in zip(singles, single_images)]
    results = {key: statistics.mean(s[key] for s in scores) for key in ("colour", "shape", "position", "size")}
    for size in SIZES:
        of_size = [s["shape"] for c, s in zip(singles, scores) if c.scene.objects[0].size == size]
        results[f"shape_{size}"] = statistics.mean(of_size) if of_size else float("nan")
    pair_scores = [score_pair(c, im) for c, im in zip(pairs, pair_images)]
    results["pair_both_right"] = statistics.mean(s["pair_both_right"] for s in pair_scores)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a shapes-world VAE's round trip of the benchmark scenes.")
    parser.add_argument("--vae", type=Path, required=True, help="a VAE folder, or a model folder with vae/")
    args = parser.parse_args(argv)
    results = measure(load_vae(args.vae))
    for key, value in results.items():
        print(f"{key:<16} {value:6.1%}")
    print(json.dumps({k: round(v, 4) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
