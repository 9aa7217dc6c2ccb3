"""Render one preview thumbnail per built-in style preset with the embedded model into styles/previews/.

    python scripts/style_previews.py [--prompt TEXT] [--seed N] [--steps N]

The embedded model knows only the shapes world, so a preview shows how a preset's words steer it,
not what the preset gives on a general model. Same arguments, same machine: same files. A preview the safety
checker withholds is made again with the next seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from t2i.generation.engine import Engine  # noqa: E402
from t2i.recipes.labels import Labeller  # noqa: E402
from t2i.recipes.infotext import write_atomically  # noqa: E402
from t2i.request import GenerationRequest  # noqa: E402
from t2i.settings import Settings  # noqa: E402
from t2i.style_files import load_styles  # noqa: E402
from t2i.styles import BUILTIN_STYLES_DIR, preview_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="a large red circle in the center on a blue background")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    engine = Engine(Settings(device="cpu", dtype="float32", default_model="embedded"))
    library = load_styles([BUILTIN_STYLES_DIR])
    labeller = Labeller()
    for name in library.names():
        item = safe_preview(engine, GenerationRequest(prompt=args.prompt, styles=(name,), seed=args.seed,
                                                      steps=args.steps))
        path = preview_path(name)
        write_atomically(path, labeller.png(item.image, item.parameters))
        print(path, f"(seed {item.seed})" if item.seed != args.seed else "")


def safe_preview(engine: Engine, request: GenerationRequest, tries: int = 10):
    """The first image the safety gate passes, trying the next seed after a withheld one (a false positive of
    NudeNet on a round shape); the seed used is in the PNG's recipe."""
    for seed in range(request.seed, request.seed + tries):
        item = engine.generate(dataclasses.replace(request, seed=seed)).images[0]
        if item.image is not None:
            return item
        print(f"{request.styles[0]}: seed {seed} withheld ({item.notice}); trying the next seed", file=sys.stderr)
    raise SystemExit(f"error: the safety checker withheld {tries} seeds in a row for style {request.styles[0]!r}")


if __name__ == "__main__":
    main()
