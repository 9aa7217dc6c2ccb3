"""Print the table of preset changes tried on textures (docs/training_experiments.md) from train_style_{STYLE}_*.json.

One row per result file of a texture style (bench/train_style.py --result ...): the settings changed from the
"quick style" preset, the share of images with the pattern with the trigger / without, the prompts, the training
seconds (1 training thread on the shared 2-core machine) and the file. Markdown on stdout. The settings are the
changes from the preset as it was when the file was written (older striped runs changed an older preset).

    python bench/texture_runs_table.py [--styles dotted outlined]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _settings(settings: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in settings.items()) or "**quick style as it is**"


def rows(style: str) -> list[str]:
    """One markdown row per result file of `style`, best share with the trigger first."""
    found = []
    for path in sorted(RESULTS.glob(f"train_style_{style}_*.json")):
        result = json.loads(path.read_text())
        run = result["style"]
        found.append((run["with_trigger"], f"| {style} | {_settings(run['settings'])} | {run['with_trigger']:.0%} / "
                                           f"{run['without_trigger']:.0%} | {result['prompts']} | "
                                           f"{run['train_seconds']:.0f} s | `{path.name}` |"))
    return [row for _, row in sorted(found, key=lambda item: -item[0])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", nargs="+", default=["dotted", "outlined"])
    args = parser.parse_args()
    print("| style | change to quick style | with trigger / without | prompts | training | file |")
    print("|---|---|---|---|---|---|")
    for style in args.styles:
        print("\n".join(rows(style)))


if __name__ == "__main__":
    main()
