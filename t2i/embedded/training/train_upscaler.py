"""Train the embedded 2x upscaler: a small RealESRGAN-Compact (SRVGG) network on shapes-world renders.

The world draws any scene at any size, so every training pair is exact: a scene rendered at 2N pixels is the
target, the same render shrunk to N pixels (box filter, plus a little blur half the time, as a diffusion model's
64-pixel output is softer than a clean render) is the input. The weights are written as safetensors in the key
layout spandrel recognises as "RealESRGAN Compact", so hires fix loads them like any downloaded model upscaler.

    python -m t2i.embedded.training.train_upscaler [--steps 1500] [--out t2i/embedded/upscalers/...]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact

from t2i.embedded.world import random_scene, render

UPSCALER_DIR = Path(__file__).resolve().parent.parent / "upscalers"
DEFAULT_OUT = UPSCALER_DIR / "shapes-compact-2x.safetensors"
NUM_FEAT, NUM_CONV, SCALE = 32, 8, 2


def training_pair(rng: random.Random, hr_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (low-res, high-res) pair as float arrays in [0, 1], HWC."""
    hr = render(random_scene(rng, two_objects=rng.random() < 0.4), size=hr_size)
    lr = hr.resize((hr_size // SCALE, hr_size // SCALE), Image.Resampling.BOX)
    if rng.random() < 0.5:
        lr = lr.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.7)))
    return np.asarray(lr, np.float32) / 255, np.asarray(hr, np.float32) / 255


def batch(rng: random.Random, size: int, hr_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of pairs as NCHW tensors."""
    pairs = [training_pair(rng, hr_size) for _ in range(size)]
    lr, hr = (torch.from_numpy(np.stack([p[i] for p in pairs])).permute(0, 3, 1, 2) for i in (0, 1))
    return lr, hr


def train(steps: int, seed: int, out: Path) -> dict:
    """Train from scratch and write the weights; returns the held-out L1 of the model and of bicubic."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=NUM_FEAT, num_conv=NUM_CONV, upscale=SCALE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    started = time.monotonic()
    for step in range(steps):
        lr, hr = batch(rng, 16, rng.choice((64, 96, 128)))
        loss = F.l1_loss(model(lr), hr)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f} ({time.monotonic() - started:.0f} s)", flush=True)
    model.eval()
    held_out = random.Random(seed + 1)
    with torch.no_grad():
        lr, hr = batch(held_out, 64, 128)
        ours = F.l1_loss(model(lr).clamp(0, 1), hr).item()
        bicubic = F.l1_loss(F.interpolate(lr, scale_factor=SCALE, mode="bicubic").clamp(0, 1), hr).item()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out),
              metadata={"architecture": "RealESRGAN Compact (SRVGGNetCompact)", "scale": str(SCALE),
                        "trained_on": "t2i shapes world", "steps": str(steps), "seed": str(seed)})
    report = {"steps": steps, "seed": seed, "parameters": sum(p.numel() for p in model.parameters()),
              "held_out_l1": round(ours * 255, 2), "bicubic_l1": round(bicubic * 255, 2),
              "seconds": round(time.monotonic() - started)}
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (leave the rest to others)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(train(args.steps, args.seed, args.out)))


if __name__ == "__main__":
    main()
