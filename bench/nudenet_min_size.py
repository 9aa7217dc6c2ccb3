"""What NudeNet reads in small images, seen two ways: as NudeNet fits them to its 320 px input itself (a 64 px
image enlarged five times) and as the checker shows them (`detector_view`: under 160 px, enlarged twice on a grey
letterbox). Measured: face scores on photos of people (the ones installed packages ship: matplotlib's Grace
Hopper, scikit-image's astronaut and cameraman) shrunk to each size; the embedded model's images (the corpus and
seeds of tests/test_safety_image.py: withheld, and any detection at all); its live previews and their
information size (the gate's PREVIEW_MIN_SIDE). Writes bench/results/nudenet_min_size.json.

    python bench/nudenet_min_size.py [--images 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result  # noqa: E402
from t2i.embedded.captions import corpus  # noqa: E402
from t2i.generation.engine import Engine  # noqa: E402
from t2i.plugins import PluginManager  # noqa: E402
from t2i.request import GenerationRequest  # noqa: E402
from t2i.safety.gate import PREVIEW_MIN_SIDE, information_size  # noqa: E402
from t2i.settings import Settings  # noqa: E402
from t2i_plugins.safety_image.nudenet_checker import OFF, detector_view  # noqa: E402

SIDES = (320, 256, 192, 160, 128, 112, 96, 80, 64, 56, 48, 40, 32, 24, 16)


def shipped_photos() -> dict[str, Path]:
    """Photos of people that installed packages ship (no download)."""
    def package_dir(name):
        return Path(importlib.util.find_spec(name).submodule_search_locations[0])
    return {"grace_hopper": package_dir("matplotlib") / "mpl-data" / "sample_data" / "grace_hopper.jpg",
            "astronaut": package_dir("skimage") / "data" / "astronaut.png",
            "camera": package_dir("skimage") / "data" / "camera.png"}


def nudenet_own_fit(nudenet, image: Image.Image) -> dict[str, float]:
    """NudeNet's scores on the image as NudeNet fits it to its input itself (the checker before issue 29)."""
    scores: dict[str, float] = {}
    for found in nudenet.detector.detect(np.asarray(image.convert("RGBA"))):
        scores[found["class"]] = max(scores.get(found["class"], 0.0), round(float(found["score"]), 4))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="embedded-model images to screen both ways")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = Settings(device="cpu", dtype="float32", entry_point_plugins=False, default_model="embedded",
                        data_dir=Path(tempfile.mkdtemp(prefix="t2i-bench-")), safety_allow_unchecked_images=True)
    plugins = PluginManager.discover(settings)
    nudenet = plugins.plugins["nudenet"]
    views = {"nudenet_fit": lambda image: nudenet_own_fit(nudenet, image),
             "checker_view": lambda image: nudenet.check_image(image).scores}
    faces = {view: {} for view in views}
    for name, path in shipped_photos().items():
        photo = Image.open(path).convert("RGB")
        for view, scores_of in views.items():
            faces[view][name] = {}
            for side in SIDES:
                small = photo.copy()
                small.thumbnail((side, side), Image.Resampling.LANCZOS)
                faces[view][name][side] = max((s for c, s in scores_of(small).items() if c.startswith("FACE_")),
                                              default=0.0)
    embedded = embedded_images(settings, plugins, views, nudenet.thresholds, args.images)
    preview = {}
    for method in ("full", "approx"):  # "auto" is "full" for the embedded model's small VAE
        engine = Engine(dataclasses.replace(settings, preview_method=method),
                        plugins=PluginManager(p for p in plugins.plugins.values() if p.kind == "prompt_check"))
        previews = []
        engine.generate(GenerationRequest(prompt="a small red star in the top-left corner on a blue background",
                                          seed=0, steps=20), on_progress=lambda e: previews.extend(e.previews or []))
        preview[method] = {"shown_size": list(previews[0].size),
                           "information_size": list(information_size(previews[0])),
                           **{f"{view}_max_score": max((max(scores_of(p).values(), default=0.0) for p in previews),
                                                       default=0.0) for view, scores_of in views.items()}}
    columns = [(view, name) for view in faces for name in faces[view]]
    print(f"{'side px':>8} " + " ".join(f"{view[:7] + ':' + name:>20}" for view, name in columns))
    for side in SIDES:
        print(f"{side:>8} " + " ".join(f"{faces[view][name][side]:>20.3f}" for view, name in columns))
    for view, row in embedded.items():
        print(f"{args.images} embedded-model images, {view}: {row['withheld']} withheld, {row['any_detection']} with "
              f"any detection, highest flaggable score {row['highest_flaggable_score']:.3f}")
    for method, row in preview.items():
        print(f"embedded-model {method} preview: shown {row['shown_size']}, information {row['information_size']}, "
              f"highest NudeNet score {row['nudenet_fit_max_score']:.3f} (NudeNet's fit), "
              f"{row['checker_view_max_score']:.3f} (checker's view)")
    print(f"the gate screens previews from {PREVIEW_MIN_SIDE} px of information")
    result = {"face_score_by_side": faces, "embedded_images": embedded, "embedded_preview": preview,
              "preview_min_side": PREVIEW_MIN_SIDE}
    write_result("nudenet_min_size", result, model="NudeNet 320n on shipped photos; embedded-model images and previews")
    print(json.dumps(result))


def embedded_images(settings, plugins, views, thresholds, count: int) -> dict:
    """The embedded model's images (20 steps, unchecked) screened each way: withheld, any detection, top score."""
    engine = Engine(settings, plugins=PluginManager(p for p in plugins.plugins.values() if p.kind == "prompt_check"))
    rows = {view: {"withheld": 0, "any_detection": 0, "highest_flaggable_score": 0.0, "withheld_images": []}
            for view in views}
    for index, prompt in enumerate(corpus(count, seed=7)):
        image = engine.generate(GenerationRequest(prompt=prompt, seed=index - index % 8, steps=20)).images[0].image
        for view, scores_of in views.items():
            scores = scores_of(image)
            flaggable = [s for c, s in scores.items() if thresholds.get(c, OFF) < OFF]
            row = rows[view]
            row["any_detection"] += bool(scores)
            row["highest_flaggable_score"] = max(row["highest_flaggable_score"], *flaggable, 0.0)
            if any(s >= thresholds.get(c, OFF) for c, s in scores.items()):
                row["withheld"] += 1
                row["withheld_images"].append({"index": index, "prompt": prompt, "scores": scores})
    return rows


if __name__ == "__main__":
    main()
