"""Print the table of preset changes tried on textures (docs/training_experiments.md) from train_style_{STYLE}_*.json.

One row per result file of a texture style (bench/train_style.py --result ...): the settings changed from the
"quick style" preset, the shapes the 12 style images show, the share of images with the pattern with the trigger /
without (and per shape the prompts named, where the file has it), the prompts, the training seconds (1 training
thread on the shared 2-core machine) and the file. Markdown on stdout. The settings are the
changes from the preset as it was when the file was written (older striped runs changed an older preset).

    python bench/texture_runs_table.py [--styles dotted outlined]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# bench/train_style.py's drawn dataset (random.Random(0), unchanged since the first texture run): files written before
# it recorded the images' shapes show these
DRAWN_SHAPES = ["circle", "heart", "star", "triangle"]


def _settings(settings: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in settings.items()) or "**quick style as it is**"


def rows(style: str) -> list[str]:
    """One markdown row per result file of `style`, best share with the trigger first."""
    found = []
    for path in sorted(RESULTS.glob(f"train_style_{style}_*.json")):
        result = json.loads(path.read_text())
        run = result["style"]
        shapes = run.get("image_shapes", DRAWN_SHAPES)
        count = f" ({result['images']} images)" if result["images"] != 12 else ""
        by_shape = ", ".join(f"{shape} {share}" for shape, share in run.get("with_trigger_by_shape", {}).items())
        found.append((run["with_trigger"], f"| {style} | {_settings(run['settings'])} | "
                                           f"{'every shape' if len(shapes) == 5 else ', '.join(shapes)}{count} | "
                                           f"{run['with_trigger']:.0%} / {run['without_trigger']:.0%}"
                                           f"{f' ({by_shape})' if by_shape else ''} | {result['prompts']} | "
                                           f"{run['train_seconds']:.0f} s | `{path.name}` |"))
    return [row for _, row in sorted(found, key=lambda item: -item[0])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", nargs="+", default=["dotted", "outlined"])
    args = parser.parse_args()
    print("| style | change to quick style | shapes in the images | with trigger / without | prompts | training | "
          "file |")
    print("|---|---|---|---|---|---|---|")
    for style in args.styles:
        print("\n".join(rows(style)))


if __name__ == "__main__":
    main()
