"""The smallest image NudeNet can read: its scores on photos of people (the ones shipped in installed packages:
matplotlib's Grace Hopper, scikit-image's astronaut) shrunk to each size, and the information size of the
embedded model's live previews. Justifies the safety gate's PREVIEW_MIN_SIDE. Writes
bench/results/nudenet_min_size.json.

    python bench/nudenet_min_size.py
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result  # noqa: E402
from t2i.generation.engine import Engine  # noqa: E402
from t2i.plugins import PluginManager  # noqa: E402
from t2i.request import GenerationRequest  # noqa: E402
from t2i.safety.gate import PREVIEW_MIN_SIDE, information_size  # noqa: E402
from t2i.settings import Settings  # noqa: E402

SIDES = (320, 256, 192, 160, 128, 112, 96, 80, 64, 56, 48, 40, 32, 24, 16)


def shipped_photos() -> dict[str, Path]:
    """Photos of people that installed packages ship (no download)."""
    def package_dir(name):
        return Path(importlib.util.find_spec(name).submodule_search_locations[0])
    return {"grace_hopper": package_dir("matplotlib") / "mpl-data" / "sample_data" / "grace_hopper.jpg",
            "astronaut": package_dir("skimage") / "data" / "astronaut.png"}


def main() -> None:
    torch.set_num_threads(1)
    settings = Settings(device="cpu", dtype="float32", entry_point_plugins=False, default_model="embedded",
                        data_dir=Path(tempfile.mkdtemp(prefix="t2i-bench-")), safety_allow_unchecked_images=True)
    plugins = PluginManager.discover(settings)
    nudenet = plugins.plugins["nudenet"]
    faces = {}
    for name, path in shipped_photos().items():
        photo = Image.open(path).convert("RGB")
        faces[name] = {}
        for side in SIDES:
            small = photo.copy()
            small.thumbnail((side, side), Image.Resampling.LANCZOS)
            scores = nudenet.check_image(small).scores
            faces[name][side] = max((s for c, s in scores.items() if c.startswith("FACE_")), default=0.0)
    preview = {}
    for method in ("full", "approx"):  # "auto" is "full" for the embedded model's small VAE
        engine = Engine(dataclasses.replace(settings, preview_method=method),
                        plugins=PluginManager(p for p in plugins.plugins.values() if p.kind == "prompt_check"))
        previews = []
        engine.generate(GenerationRequest(prompt="a small red star in the top-left corner on a blue background",
                                          seed=0, steps=20), on_progress=lambda e: previews.extend(e.previews or []))
        preview[method] = {"shown_size": list(previews[0].size),
                           "information_size": list(information_size(previews[0])),
                           "nudenet_max_score": max((max(nudenet.check_image(p).scores.values(), default=0.0)
                                                     for p in previews), default=0.0)}
    print(f"{'side px':>8} " + " ".join(f"{name:>13}" for name in faces))
    for side in SIDES:
        print(f"{side:>8} " + " ".join(f"{faces[name][side]:>13.3f}" for name in faces))
    for method, row in preview.items():
        print(f"embedded-model {method} preview: shown {row['shown_size']}, information {row['information_size']}, "
              f"highest NudeNet score {row['nudenet_max_score']:.3f}")
    print(f"the gate screens previews from {PREVIEW_MIN_SIDE} px of information")
    result = {"face_score_by_side": faces, "embedded_preview": preview, "preview_min_side": PREVIEW_MIN_SIDE}
    write_result("nudenet_min_size", result, model="NudeNet 320n on shipped photos; embedded-model previews")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
