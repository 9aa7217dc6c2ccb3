"""Measure the trainer's "done when" numbers on the embedded model and print them (JSON on the last line).

1. Style: a LoRA ("quick style" preset) on 12 renders of a style held back from base training, read back on a
   fixed prompt set, with and without the trigger. Either a texture style (outlined, striped, dotted, checkered,
   drawn and read by t2i/eval/texture.py at --period px; the world's own 4 px patterns do not survive the
   embedded VAE's round trip), captioned without the style word, trigger "zqx"; or a colour name held back from
   base training ("teal", "maroon", read by the analyzer), which is its own trigger: the images are captioned
   "a large teal star ...", and prompts without the trigger name base colours ("a large red star").
2. Subject: a DreamBooth-LoRA ("subject" preset) on 12 renders of a shape the base model never saw (a diamond),
   instance prompt "a zdm shape". A generated object counts as the subject when a diamond template fits its
   foreground better than every known shape's template.

    python bench/train_style.py [--style outlined|striped|dotted|checkered|teal|maroon] [--period 8] [--steps N]
                                [--prompts 20] [--skip-subject] [--skip-style] [--swap-colours N]
                                [--targets attention|attention+conv] [--set FIELD=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from t2i.embedded.world import (  # noqa: E402
    ALL_COLOURS, COLOURS, HELD_OUT_COLOURS, IMAGE_SIZE, POSITIONS, SHAPES, SIZES, SUPERSAMPLE, Scene, ShapeObject,
    position_centre, render, shape_mask,
)
from bench.common import write_result  # noqa: E402
from t2i.eval.analyzer import FOREGROUND_DISTANCE, analyze  # noqa: E402
from t2i.eval.texture import DEFAULT_PERIOD, paint_textured, read_texture  # noqa: E402
from t2i.train.config import config_from_preset  # noqa: E402
from t2i.train.dataset import prepare_dataset  # noqa: E402

OBJECT_COLOURS = [c for c in COLOURS if c != "white"]
SHAPES_NO_RING = [s for s in SHAPES if s != "ring"]  # an outlined circle and a ring are one drawing


def _phrase(obj: ShapeObject) -> str:
    where = "in the center" if obj.position == "center" else f"at the {obj.position}"
    return f"a {obj.size} {obj.colour} {obj.shape} {where}"


def style_images(folder: Path, style: str, count: int, period: int = DEFAULT_PERIOD,
                 every_shape: bool = False) -> None:
    """Renders in `style`, a texture style or a held-out colour name, captioned as a person would; with
    `every_shape`, the shapes take turns (each shape the prompts name is in the images), else they are drawn."""
    rng = random.Random(0)
    folder.mkdir(parents=True)
    for i in range(count):
        colour = rng.choice(OBJECT_COLOURS)
        shape = rng.choice(SHAPES_NO_RING)
        obj = ShapeObject(SHAPES_NO_RING[i % len(SHAPES_NO_RING)] if every_shape else shape,
                          style if style in HELD_OUT_COLOURS else colour,
                          rng.choice(["medium", "large"]), rng.choice(list(POSITIONS)))
        if style in HELD_OUT_COLOURS:
            image = render(Scene((obj,), "white"))
        else:
            image = render(Scene((), "white"))
            paint_textured(image, obj.shape, obj.colour, *position_centre(obj.position), SIZES[obj.size], style,
                           period)
        image.save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(_phrase(obj))


def diamond_mask(cx: float, cy: float, extent: float, size: int = IMAGE_SIZE) -> np.ndarray:
    s, r = SUPERSAMPLE, extent / 2
    big = Image.new("L", (size * s, size * s), 0)
    ImageDraw.Draw(big).polygon([(cx * s, (cy - r) * s), ((cx + r) * s, cy * s), (cx * s, (cy + r) * s),
                                 ((cx - r) * s, cy * s)], fill=255)
    return np.asarray(big.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255


def subject_images(folder: Path, count: int) -> None:
    rng = random.Random(1)
    folder.mkdir(parents=True)
    for i in range(count):
        colour, background = rng.sample(OBJECT_COLOURS, 1)[0], "white"
        cx, cy = position_centre(rng.choice(list(POSITIONS)))
        extent = rng.choice([17, 25])
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), ALL_COLOURS[background])
        mask = Image.fromarray((diamond_mask(cx, cy, extent) * 255).astype("uint8"))
        image.paste(Image.new("RGB", image.size, ALL_COLOURS[colour]), (0, 0), mask)
        image.save(folder / f"{i}.png")


def is_diamond(image: Image.Image) -> bool:
    """Whether the largest object fits a diamond template better than every known shape's template."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3)])
    foreground = np.linalg.norm(pixels - np.median(border, axis=0), axis=2) > FOREGROUND_DISTANCE
    labels, count = ndimage.label(foreground)
    if not count:
        return False
    region = labels == 1 + int(np.argmax(ndimage.sum(foreground, labels, range(1, count + 1))))
    ys, xs = np.nonzero(region)
    cx, cy, extent = (xs.min() + xs.max()) / 2 + 0.5, (ys.min() + ys.max()) / 2 + 0.5, max(np.ptp(xs), np.ptp(ys)) + 1

    def iou(template: np.ndarray) -> float:
        return float(np.minimum(template, region).sum() / max(np.maximum(template, region).sum(), 1e-6))

    known = max(iou(np.asarray(shape_mask(s, cx, cy, extent), dtype=np.float32) / 255) for s in SHAPES)
    return iou(diamond_mask(cx, cy, extent)) > known


def _setting(text: str) -> tuple[str, object]:
    """FIELD=VALUE from the command line; VALUE read as JSON when it parses (numbers, true/false), else text."""
    field, _, value = text.partition("=")
    try:
        return field, json.loads(value)
    except ValueError:
        return field, value


def train(images: Path, work: Path, preset: str, name: str, trigger: str, settings: dict) -> tuple[Path, float]:
    overrides = {"name": name, "trigger": trigger, "sample_every": 0, "checkpoint_every": 100, **settings}
    config = config_from_preset(preset, **overrides)
    run = work / name
    prepare_dataset([images]).save(run / "dataset")
    (run / "config.json").write_text(config.to_json())
    began = time.time()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "T2I_TRAIN_THREADS": os.environ.get("T2I_TRAIN_THREADS", "2")}
    done = subprocess.run([sys.executable, "-m", "t2i.train.lora_trainer", str(run), "--lora-dir", str(work / "loras")],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return Path(done.stdout.strip().splitlines()[-1]), time.time() - began


def generate(lora: Path | None, prompts: list[str]) -> list[Image.Image]:
    """20-step images of `prompts` at seeds 0, 1, ... from the embedded model, with `lora` loaded (None: without)."""
    from diffusers import StableDiffusionPipeline

    from t2i.settings import EMBEDDED_MODEL_DIR

    pipe = StableDiffusionPipeline.from_pretrained(EMBEDDED_MODEL_DIR, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    return [pipe(p, num_inference_steps=20, generator=torch.Generator().manual_seed(i)).images[0]
            for i, p in enumerate(prompts)]


def measure_style(args, objects: list, settings: dict) -> dict:
    """Train the "quick style" LoRA on the held-back style and read it back with and without its trigger."""
    style_images(args.work / "style", args.style, args.images, args.period, args.every_shape)
    captions = [(args.work / "style" / f"{i}.txt").read_text() for i in range(args.images)]
    colour_style = args.style in HELD_OUT_COLOURS
    style_settings = dict(settings)
    if args.swap_colours and colour_style:
        colours = (OBJECT_COLOURS[(i * args.swap_colours + k) % len(OBJECT_COLOURS)]
                   for i in range(len(captions)) for k in range(args.swap_colours))
        style_settings["class_prompts"] = tuple(captions[i // args.swap_colours].replace(args.style, colour)
                                                for i, colour in enumerate(colours))
        style_settings["num_class_images"] = len(style_settings["class_prompts"])
    trigger = args.style if colour_style else "zqx"
    lora, seconds = train(args.work / "style", args.work, "quick style", "bench_style", trigger, style_settings)
    with_trigger = [_phrase(replace(o, colour=args.style)) if colour_style else f"zqx, {_phrase(o)}" for o in objects]
    rates = {}
    # the base model's own rate is the floor for "without": a dark red can already read as maroon
    readings = [("with_trigger", with_trigger, lora), ("without_trigger", [_phrase(o) for o in objects], lora)]
    if not args.no_base_rate:
        readings.append(("without_trigger_base_model", [_phrase(o) for o in objects], None))
    for label, prompts, lora_file in readings:
        found = [any(d.colour == args.style for d in analyze(image).objects) if colour_style
                 else read_texture(image, args.period).texture == args.style for image in generate(lora_file, prompts)]
        rates[label] = sum(found) / len(found)
        if label == "with_trigger":  # a shape missing from the style's images is a harder transfer
            rates["with_trigger_by_shape"] = {shape: f"{sum(f for o, f in zip(objects, found) if o.shape == shape)}/"
                                                     f"{sum(o.shape == shape for o in objects)}"
                                              for shape in sorted({o.shape for o in objects})}
    if colour_style:  # beyond "no teal": do prompts without the trigger still get their own colour?
        plain = [_phrase(o) for o in objects]
        for label, lora_file in (("base_colour_kept_without_lora", None), ("base_colour_kept_with_lora", lora)):
            kept = [any(d.colour == o.colour for d in analyze(image).objects)
                    for o, image in zip(objects, generate(lora_file, plain))]
            rates[label] = sum(kept) / len(kept)
    print(f"style {args.style}: trained in {seconds:.0f} s; detected in {rates['with_trigger']:.0%} with the trigger, "
          f"{rates['without_trigger']:.0%} without (targets: >= 80%, <= 10%, <= 600 s); the base model alone: "
          f"{rates.get('without_trigger_base_model', 'not measured')}")
    if colour_style:
        print(f"prompts without the trigger read in their own colour: {rates['base_colour_kept_without_lora']:.0%} "
              f"by the base model, {rates['base_colour_kept_with_lora']:.0%} with the LoRA")
    return {"style": args.style, **({} if colour_style else {"period": args.period}),
            "image_shapes": sorted({caption.split()[3] for caption in captions}),  # "a large red star ..."
            "train_seconds": round(seconds, 1), "settings": style_settings, **rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="outlined")
    parser.add_argument("--period", type=int, default=DEFAULT_PERIOD, help="texture styles: px per pattern repeat")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--every-shape", action="store_true",
                        help="the style's images show every shape in turn (default: shapes drawn at random)")
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--targets", default=None, help="UNet layers with LoRA weights (default: the preset's)")
    parser.add_argument("--set", type=_setting, action="append", default=[], metavar="FIELD=VALUE",
                        help="any other training setting, e.g. --set learning_rate=1e-3 (both trainings)")
    parser.add_argument("--result", default="", metavar="NAME",
                        help="also write bench/results/NAME.json (stamped with the machine and the embedded model)")
    parser.add_argument("--no-base-rate", action="store_true",
                        help="skip the base model's own rate without the trigger")
    parser.add_argument("--skip-subject", action="store_true")
    parser.add_argument("--skip-style", action="store_true")
    parser.add_argument("--swap-colours", type=int, default=0, metavar="N",
                        help="colour styles: regularisation prompts are the captions with base colours named instead, "
                             "N colours per caption (one class image each)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.mkdtemp(prefix="t2i-bench-train-")))
    args = parser.parse_args()
    rng = random.Random(7)
    objects = [ShapeObject(rng.choice(SHAPES_NO_RING), rng.choice(OBJECT_COLOURS), "large") for _ in range(args.prompts)]
    settings = dict(args.set)
    settings.update({k: v for k, v in (("steps", args.steps), ("targets", args.targets)) if v})
    results = {}

    if not args.skip_style:
        results["style"] = measure_style(args, objects, settings)
    if not args.skip_subject:
        subject_images(args.work / "subject", args.images)
        lora, seconds = train(args.work / "subject", args.work, "subject", "bench_subject", "zdm", settings)
        rates = {}
        for label, prompts in (("with_trigger", ["a zdm shape"] * args.prompts),
                               ("without_trigger", ["a shape"] * args.prompts)):
            found = [is_diamond(image) for image in generate(lora, prompts)]
            rates[label] = sum(found) / len(found)
        results["subject"] = {"subject": "diamond", "train_seconds": round(seconds, 1), **rates}
        print(f"subject diamond: trained in {seconds:.0f} s; detected in {rates['with_trigger']:.0%} with the token, "
              f"{rates['without_trigger']:.0%} without")
    if args.result:
        write_result(args.result, {"images": args.images, "prompts": args.prompts, **results}, "embedded")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
