"""What the embedded VAE carries of each texture style, per pattern period: the ceiling for a texture LoRA.

For each texture (t2i/eval/texture.py) and period, renders N shapes, sends them through the VAE's round trip and
reports how often `read_texture` reads the texture on the renders and on the round trips, and the share of fine
detail the round trip keeps (t2i/train/style_check.py's measure, whose threshold comes from this table).
Writes bench/results/texture_vae.json. With --dataset-draws N: instead, the spread of what Check images judges, the
median detail kept of N datasets of 12 renders per texture at 8 px (bench/results/texture_vae_datasets.json).

    python bench/texture_vae.py [--images 24] [--periods 4 6 8] [--dataset-draws 10]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from t2i.embedded.world import ALL_COLOURS, COLOURS, POSITIONS, SHAPES, SIZES, position_centre  # noqa: E402
from t2i.eval.texture import TEXTURES, paint_textured, read_texture  # noqa: E402
from t2i.eval.vae_roundtrip import load_vae  # noqa: E402
from t2i.settings import EMBEDDED_MODEL_DIR  # noqa: E402
from t2i.train.style_check import detail_kept, vae_round_trip  # noqa: E402

OBJECT_COLOURS = [c for c in COLOURS if c != "white"]


def renders(texture: str, period: int, count: int, seed: int) -> list[Image.Image]:
    """`count` shapes in `texture` of random shape, colour, size and place on white."""
    rng = random.Random(seed)
    images = []
    for _ in range(count):
        image = Image.new("RGB", (64, 64), ALL_COLOURS["white"])
        paint_textured(image, rng.choice([s for s in SHAPES if s != "ring"]), rng.choice(OBJECT_COLOURS),
                       *position_centre(rng.choice(list(POSITIONS))), SIZES[rng.choice(["medium", "large"])],
                       texture, period)
        images.append(image)
    return images


def dataset_medians(vae, draws: int, period: int = 8, count: int = 12) -> None:
    """Per texture, the median detail kept of `draws` datasets of `count` renders (seeds 100, 101, ...)."""
    rows = []
    for texture in TEXTURES:
        medians = [statistics.median(detail_kept(a, b) for a, b in zip(images, vae_round_trip(vae, images)))
                   for images in (renders(texture, period, count, seed) for seed in range(100, 100 + draws))]
        rows.append({"texture": texture, "period": period if texture in ("striped", "dotted", "checkered") else None,
                     "dataset_median_min": round(min(medians), 3), "dataset_median_max": round(max(medians), 3),
                     "dataset_medians": [round(m, 3) for m in medians]})
        print(json.dumps(rows[-1]), flush=True)
    write_result("texture_vae_datasets", {"datasets": draws, "images_per_dataset": count, "rows": rows}, "embedded")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--periods", type=int, nargs="+", default=[4, 6, 8])
    parser.add_argument("--dataset-draws", type=int, default=0, metavar="N")
    args = parser.parse_args()
    vae = load_vae(Path(EMBEDDED_MODEL_DIR))
    if args.dataset_draws:
        dataset_medians(vae, args.dataset_draws)
        return
    rows = []
    for period in args.periods:
        for texture in TEXTURES:
            if texture in ("solid", "outlined") and period != args.periods[-1]:
                continue  # no period: measured once
            images = renders(texture, period, args.images, seed=period)
            decoded = vae_round_trip(vae, images)
            kept = [detail_kept(a, b) for a, b in zip(images, decoded)]
            read = [read_texture(i, period).texture == texture for i in images + decoded]
            row = {"texture": texture, "period": period if texture in ("striped", "dotted", "checkered") else None,
                   "read_on_renders": sum(read[:len(images)]) / len(images),
                   "read_on_round_trips": sum(read[len(images):]) / len(images),
                   "detail_kept_median": round(statistics.median(kept), 3), "detail_kept_min": round(min(kept), 3),
                   "detail_kept_max": round(max(kept), 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    write_result("texture_vae", {"images_per_row": args.images, "rows": rows}, "embedded")


if __name__ == "__main__":
    main()
