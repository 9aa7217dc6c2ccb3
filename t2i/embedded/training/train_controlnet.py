"""Train the embedded model's ControlNet (edge maps -> shapes), resumably; then measure where it puts shapes.

    python -m t2i.embedded.training.train_controlnet            # train against t2i/embedded/model, export, evaluate
    python -m t2i.embedded.training.train_controlnet --stage eval --n-eval 48

The ControlNet starts as a copy of the UNet's encoder (`ControlNetModel.from_unet`); the UNet, VAE and text
encoder stay frozen. Training scenes are shapes-world renders with shapes moved and scaled off the 3x3 grid the
base model knows, so that only the control map can say where a shape goes. Each scene is rendered and encoded by
the VAE once (stage "encode"); the control maps are controlnet_aux Canny edges made the way the plugin makes
them, a fifth of them thickened like hand-drawn scribbles. The work folder is keyed by a hash of the base model's weights, so after the
UNet is retrained the same command trains a fresh ControlNet for it.

It runs a little over ~300 lines because its stages (encode, train, export, evaluate) share the scene,
control-map and IoU helpers that the tests also use to measure the shipped ControlNet.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from t2i.embedded.captions import SHAPE_WORDS, caption
from t2i.embedded.training.checkpoints import load_checkpoint, save_checkpoint, writable_dir
from t2i.embedded.training.tokenizer_build import MAX_LENGTH
from t2i.embedded.training.batches import images_to_tensor
from t2i.embedded.world import ALL_COLOURS, IMAGE_SIZE, SIZES, Scene, paint, position_centre, random_scene, shape_mask
from t2i.eval.analyzer import FOREGROUND_DISTANCE
from t2i.models.file_hash import files_sha256
from t2i.settings import EMBEDDED_MODEL_DIR

SHIPPED_DIR = Path(__file__).resolve().parent / "controlnet"
REPO_DIR = SHIPPED_DIR.parents[2]
CANNY_THRESHOLDS = (100, 200)  # controlnet_aux's defaults, which the plugin uses too
STAGES = ("all", "encode", "train", "export", "eval")
MIN_CONTRAST = 150.0  # RGB distance between object and background in the held-out set


@dataclass
class ControlTrainConfig:
    out: Path = SHIPPED_DIR
    work: Path = Path.home() / ".cache" / "t2i-controlnet"
    model: Path = EMBEDDED_MODEL_DIR
    seed: int = 0
    steps: int = 2000
    batch: int = 16
    lr: float = 3e-4
    n_scenes: int = 6000
    checkpoint_every: int = 100
    empty_caption: float = 0.2  # captions left empty, so the control map alone must place the shape
    threads: int = 1  # the machine is shared with other training: one core


@dataclass(frozen=True)
class PlacedObject:
    """One object drawn off-grid: its scene entry plus the pixel centre and extent it was drawn at."""

    scene_index: int
    cx: float
    cy: float
    extent: float


def placed_scene(rng: random.Random, two_objects: bool) -> tuple[Scene, list[PlacedObject]]:
    """A random scene whose objects are shifted up to 8 px and scaled 0.8-1.25x away from the grid."""
    scene = random_scene(rng, two_objects)
    placed = []
    for k, obj in enumerate(scene.objects):
        extent = SIZES[obj.size] * rng.uniform(0.8, 1.25)
        cx, cy = position_centre(obj.position)
        margin = extent / 2 + 1
        cx = min(max(cx + rng.uniform(-8, 8), margin), IMAGE_SIZE - margin)
        cy = min(max(cy + rng.uniform(-8, 8), margin), IMAGE_SIZE - margin)
        placed.append(PlacedObject(k, cx, cy, extent))
    return scene, placed


def draw(scene: Scene, placed: list[PlacedObject]) -> Image.Image:
    """Render a placed scene at 64x64."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), ALL_COLOURS[scene.background])
    for p in placed:
        obj = scene.objects[p.scene_index]
        paint(image, obj.shape, obj.colour, p.cx, p.cy, p.extent, obj.style)
    return image


def object_mask(scene: Scene, placed: PlacedObject) -> np.ndarray:
    """Boolean mask of one placed object."""
    obj = scene.objects[placed.scene_index]
    return np.asarray(shape_mask(obj.shape, placed.cx, placed.cy, placed.extent)) > 127


def canny_map(image: Image.Image) -> Image.Image:
    """The Canny map the plugin's "canny" preprocessor makes from a 64x64 image (controlnet_aux)."""
    from controlnet_aux import CannyDetector

    return CannyDetector()(image, *CANNY_THRESHOLDS, detect_resolution=IMAGE_SIZE, image_resolution=IMAGE_SIZE,
                           output_type="pil")


def plain_caption(scene: Scene, rng: random.Random) -> str:
    """A caption without positions: colour, shape and background only."""
    names = [f"{o.colour} {rng.choice(SHAPE_WORDS[o.shape])}" for o in scene.objects]
    return f"a {' and a '.join(names)} on a {scene.background} background"


def training_scenes(cfg: ControlTrainConfig) -> list[tuple[Scene, list[PlacedObject]]]:
    """The fixed training set (70% one object, 30% two)."""
    rng = random.Random(cfg.seed)
    return [placed_scene(rng, rng.random() < 0.3) for _ in range(cfg.n_scenes)]


def model_hash(model_dir: Path) -> str:
    """Short hash of the base model's UNet and VAE weights: a ControlNet is trained for one exact UNet."""
    weights = [path for part in ("unet", "vae") for path in sorted((model_dir / part).glob("*.safetensors"))]
    return files_sha256(weights)[:10]


@torch.no_grad()
def encode(cfg: ControlTrainConfig, work: Path) -> None:
    """Stage 1: latents of every training scene and its control maps, once."""
    from diffusers import AutoencoderKL

    path = work / "data.safetensors"
    if path.exists():
        return
    vae = AutoencoderKL.from_pretrained(cfg.model / "vae", dtype=torch.float32).eval()
    latents, maps = [], []
    examples = training_scenes(cfg)
    for start in range(0, len(examples), 200):
        images = [draw(scene, placed) for scene, placed in examples[start:start + 200]]
        pixels = images_to_tensor(im.convert("RGB") for im in images)
        latents.append(vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor)
        maps += [np.asarray(canny_map(im).convert("L")) for im in images]
        print(f"encoded {start + len(images)}/{len(examples)}", flush=True)
    save_file({"latents": torch.cat(latents).contiguous(), "canny": torch.from_numpy(np.stack(maps))}, str(path))


def _batch_conditions(data: dict, idx: list[int], rng: random.Random) -> torch.Tensor:
    """Control maps for a batch, in [0, 1] like the pipeline's; a fifth thickened like hand-drawn scribbles."""
    maps = []
    for i in idx:
        edge = data["canny"][i].float()[None, None] / 255.0
        if rng.random() < 0.2:
            edge = F.max_pool2d(edge, 3, stride=1, padding=1)
        maps.append(edge.expand(1, 3, -1, -1))
    return torch.cat(maps)


def train(cfg: ControlTrainConfig, work: Path) -> None:
    """Stage 2: the ControlNet on cached latents; UNet and text encoder frozen; min-SNR weighted."""
    from diffusers import ControlNetModel, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    ckpt = work / "ckpt"
    unet = UNet2DConditionModel.from_pretrained(cfg.model / "unet", dtype=torch.float32).eval().requires_grad_(False)
    text_encoder = CLIPTextModel.from_pretrained(cfg.model / "text_encoder", dtype=torch.float32).eval()
    tokenizer = CLIPTokenizer.from_pretrained(cfg.model / "tokenizer")
    scheduler = DDPMScheduler.from_pretrained(cfg.model / "scheduler")
    torch.manual_seed(cfg.seed)
    # two stride-2 convolutions: the embedded VAE scales by 4, not SD's 8
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64)).train()
    opt = torch.optim.AdamW(controlnet.parameters(), lr=cfg.lr, weight_decay=1e-2)
    start = load_checkpoint(ckpt, {"controlnet": controlnet}, opt)
    data = load_file(str(work / "data.safetensors"))
    examples = training_scenes(cfg)
    alphas = scheduler.alphas_cumprod
    for step in range(start, cfg.steps):
        rng = random.Random(cfg.seed * 1_000_003 + step)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = rng.sample(range(len(examples)), cfg.batch)
        captions = []
        for i in idx:
            roll = rng.random()
            scene = examples[i][0]
            captions.append("" if roll < cfg.empty_caption else
                            plain_caption(scene, rng) if roll < 0.6 else caption(scene, rng))
        with torch.no_grad():
            ids = tokenizer(captions, padding="max_length", max_length=MAX_LENGTH, truncation=True,
                            return_tensors="pt").input_ids
            text = text_encoder(ids)[0]
        x0 = data["latents"][idx]
        noise = torch.randn(x0.shape, generator=gen)
        # half the batch at high noise, where the layout is decided
        t = torch.randint(0, 1000, (cfg.batch,), generator=gen)
        t[: cfg.batch // 2] = torch.randint(500, 1000, (cfg.batch // 2,), generator=gen)
        noisy = scheduler.add_noise(x0, noise, t)
        down, mid = controlnet(noisy, t, text, controlnet_cond=_batch_conditions(data, idx, rng), return_dict=False)
        pred = unet(noisy, t, text, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        snr = alphas[t] / (1 - alphas[t])
        loss = (torch.clamp(snr, max=5.0) / snr * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        for group in opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (step + 1) / 100) * (0.55 + 0.45 * math.cos(math.pi * step / cfg.steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(controlnet.parameters(), 1.0)
        opt.step()
        if not torch.isfinite(loss):
            raise SystemExit(f"error: loss became {loss.item()} at step {step}; lower --lr and resume")
        if step % 20 == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save_checkpoint(ckpt, {"controlnet": controlnet}, opt, step + 1)


def export(cfg: ControlTrainConfig, work: Path, base_hash: str) -> None:
    """Stage 3: a diffusers ControlNet folder (float16 weights) beside the model card."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(cfg.model / "unet", dtype=torch.float32)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64))
    step = load_checkpoint(work / "ckpt", {"controlnet": controlnet})
    controlnet.to(torch.float16).save_pretrained(cfg.out, safe_serialization=True)
    record = {**asdict(cfg), "trained_steps": step, "base_model_hash": base_hash, "canny_thresholds": CANNY_THRESHOLDS}
    # the build machine's absolute paths mean nothing elsewhere: folders relative to the repo, no scratch folder
    del record["work"]
    record.update({key: os.path.relpath(Path(record[key]).resolve(), REPO_DIR) for key in ("out", "model")})
    (cfg.out / "training_config.json").write_text(json.dumps(record, default=str, indent=2) + "\n")
    print(f"saved the ControlNet ({step} steps) to {cfg.out}")


def heldout_controls(n: int, seed: int = 1234) -> list[tuple[Image.Image, np.ndarray, str]]:
    """Held-out single-object scenes (medium and large, off-grid): (render, shape mask, prompt without position).

    Object and background colours differ by at least MIN_CONTRAST, so that the object's mask can be measured
    in a generated image (yellow on orange, for one, sits too near the foreground threshold to segment).
    """
    rng = random.Random(10_000_019 + seed)
    found = []
    while len(found) < n:
        scene, placed = placed_scene(rng, two_objects=False)
        contrast = np.linalg.norm(np.subtract(ALL_COLOURS[scene.objects[0].colour], ALL_COLOURS[scene.background]))
        if scene.objects[0].size == "small" or contrast < MIN_CONTRAST:
            continue
        found.append((draw(scene, placed), object_mask(scene, placed[0]), plain_caption(scene, rng)))
    return found


def foreground_mask(image: Image.Image) -> np.ndarray:
    """Pixels that differ from the border's median colour, as the analyzer counts object pixels."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
                             pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    return np.linalg.norm(pixels - np.median(border, axis=0), axis=2) > FOREGROUND_DISTANCE


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks."""
    return float((a & b).sum() / max((a | b).sum(), 1))


def control_ious(engine, controls, model: str = "embedded-edges", preprocessor: str = "canny", scale: float = 1.0,
                 start: float = 0.0, end: float = 1.0, steps: int = 20, seed: int = 0) -> list[float]:
    """Mask IoU between each generated image's object and the control image's shape (0 for a withheld image)."""
    from t2i.request import GenerationRequest

    ious = []
    for k, (image, mask, prompt) in enumerate(controls):
        unit = {"image": image, "preprocessor": preprocessor, "model": model, "scale": scale, "start": start,
                "end": end}
        request = GenerationRequest(prompt=prompt, seed=seed + k, steps=steps, plugin_units={"controlnet": [unit]})
        image = engine.generate(request).images[0].image
        # an image the safety gate withholds (a false positive of the image checker) counts as a miss
        ious.append(0.0 if image is None else mask_iou(foreground_mask(image), mask))
    return ious


def evaluate(n: int) -> float:
    """Print and return the mean mask IoU of the shipped ControlNet on `n` held-out control images."""
    from t2i.generation.engine import Engine
    from t2i.settings import Settings

    engine = Engine(Settings(device="cpu", dtype="float32", default_model="embedded"))
    controls = heldout_controls(n)
    with_control = control_ious(engine, controls)
    report = {"n": n, "mean_iou": round(float(np.mean(with_control)), 3),
              "share_iou_at_least_0.7": round(float(np.mean(np.array(with_control) >= 0.7)), 3)}
    for label, window in (("without_controlnet", {"end": 0.0}), ("start_0.5", {"start": 0.5}),
                          ("start_0.8", {"start": 0.8}), ("end_0.3", {"end": 0.3}), ("scale_0.5", {"scale": 0.5})):
        report[f"mean_iou_{label}"] = round(float(np.mean(control_ious(engine, controls, **window))), 3)
    print(json.dumps(report))
    return float(np.mean(with_control))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the embedded model's ControlNet (resumable).")
    parser.add_argument("--stage", choices=STAGES, default="all")
    parser.add_argument("--n-eval", type=int, default=48, help="held-out control images for the eval stage")
    for name, default in asdict(ControlTrainConfig()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    args = vars(parser.parse_args(argv))
    stage, n_eval = args.pop("stage"), args.pop("n_eval")
    cfg = ControlTrainConfig(**args)
    torch.set_num_threads(cfg.threads)
    base_hash = model_hash(cfg.model)
    work = cfg.work / f"base-{base_hash}"  # a retrained UNet gets a fresh ControlNet
    for folder in (work, cfg.out):
        problem = writable_dir(folder)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    if stage in ("all", "encode", "train"):
        encode(cfg, work)
    if stage in ("all", "train"):
        train(cfg, work)
    if stage in ("all", "export"):
        export(cfg, work, base_hash)
    if stage in ("all", "eval"):
        evaluate(n_eval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
