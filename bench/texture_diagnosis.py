"""Where a texture style (8 px stripes, dots, checkers, or outlines) is lost on the embedded model.

Trains in this process on the 12 renders bench/train_style.py makes (--style, default striped; captions "zqx, a
large red star ..."), either the whole UNet (--mode full: the upper bound of any LoRA) or a peft LoRA on a chosen
set of UNet layers (--mode lora --targets attention|attention+conv|all), then measures with t2i/eval/texture.py:

a. sampler: images of 10 prompts with the trigger (seeds 0..9) under Euler, Euler a, DDIM, DPM++ 2M at 20/40
   steps and CFG 5/7.5/10 (--sampler-sweep), else Euler 20 steps CFG 7.5 (the pipeline's own, as the bench);
b. denoising: each training image noised to timestep t (fixed noise), the model's one-step x0 prediction decoded,
   the style read on it, for t in a sweep.
Also: how often prompts without the trigger, and the training captions themselves, come out in the style.

    python bench/texture_diagnosis.py --mode full|lora|none [--style striped|dotted|checkered|outlined]
                                      [--targets all] [--steps 400] [--lr 1e-4] [--rank 16]
                                      [--sampler-sweep] [--result NAME]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from bench.train_style import SHAPES_NO_RING, OBJECT_COLOURS, _phrase, style_images  # noqa: E402
from t2i.embedded.world import ShapeObject  # noqa: E402
from t2i.eval.texture import read_texture  # noqa: E402
from t2i.settings import EMBEDDED_MODEL_DIR  # noqa: E402
from t2i.train.dataset import prepare_dataset  # noqa: E402
from t2i.train.family_training import ATTENTION_TARGETS, CONV_TARGETS, vae_latents  # noqa: E402

# "all": every conv and linear layer of the UNet, the time embedding and conv_in/conv_out included
TARGET_SETS = {"attention": ATTENTION_TARGETS, "attention+conv": ATTENTION_TARGETS + CONV_TARGETS,
               "all": ATTENTION_TARGETS + CONV_TARGETS + ["conv_in", "conv_out", "linear_1", "linear_2"]}
SAMPLERS = ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler")


def load_pipe():
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(EMBEDDED_MODEL_DIR, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def dataset(work: Path, style: str, count: int) -> tuple[list, list[str]]:
    style_images(work / "style", style, count, 8)
    items = prepare_dataset([work / "style"]).items
    return [item.image.convert("RGB") for item in items], [f"zqx, {item.caption}" for item in items]


def embed(pipe, prompts: list[str]) -> torch.Tensor:
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


def train(pipe, latents, embeds, args) -> float:
    """Train the UNet (all of it, or a LoRA) on the latents with their caption embeddings; seconds taken."""
    from diffusers import DDPMScheduler
    from peft import LoraConfig

    unet = pipe.unet
    if args.mode == "lora":
        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                    target_modules=TARGET_SETS[args.targets]))
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    generator = torch.Generator().manual_seed(0)
    empty = embed(pipe, [""])
    began = time.time()
    unet.train()
    for step in range(args.steps):
        pick = torch.randint(0, len(latents), (args.batch,), generator=generator)
        noise = torch.randn(latents[pick].shape, generator=generator)
        t = torch.randint(0, 1000, (args.batch,), generator=generator)
        cond = embeds[pick].clone()
        cond[torch.rand(args.batch, generator=generator) < 0.1] = empty[0]
        loss = F.mse_loss(unet(schedule.add_noise(latents[pick], noise, t), t, cond).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    unet.eval()
    return time.time() - began


def generated_rate(pipe, prompts: list[str], style: str, sampler: str, steps: int, cfg: float) -> tuple[float, list]:
    from diffusers import schedulers
    pipe.scheduler = getattr(schedulers, sampler).from_config(pipe.scheduler.config)
    images = pipe(prompts, num_inference_steps=steps, guidance_scale=cfg,
                  generator=[torch.Generator().manual_seed(i) for i in range(len(prompts))]).images
    readings = [read_texture(image, 8) for image in images]
    return sum(r.texture == style for r in readings) / len(readings), readings


def denoising(pipe, latents, embeds, style: str, timesteps: list[int]) -> dict:
    """Per t: the share of training images whose one-step x0 prediction (decoded) still reads as `style`."""
    from diffusers import DDPMScheduler
    schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(123))
    rates = {}
    for t in timesteps:
        steps = torch.full((len(latents),), t)
        noisy = schedule.add_noise(latents, noise, steps)
        with torch.no_grad():
            eps = pipe.unet(noisy, steps, embeds).sample
            alpha = schedule.alphas_cumprod[t]
            x0 = (noisy - (1 - alpha).sqrt() * eps) / alpha.sqrt()
            images = pipe.vae.decode(x0 / pipe.vae.config.scaling_factor).sample
        images = pipe.image_processor.postprocess(images, output_type="pil")
        rates[t] = sum(read_texture(image, 8).texture == style for image in images) / len(images)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("full", "lora", "none"), default="full")
    parser.add_argument("--style", choices=("striped", "dotted", "checkered", "outlined"), default="striped")
    parser.add_argument("--targets", choices=tuple(TARGET_SETS), default="all")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--sampler-sweep", action="store_true")
    parser.add_argument("--result", default="")
    args = parser.parse_args()
    torch.manual_seed(0)
    pipe = load_pipe()
    images, captions = dataset(Path(tempfile.mkdtemp(prefix="t2i-texdiag-")), args.style, args.images)
    latents = vae_latents(pipe, images)
    embeds = embed(pipe, captions)
    seconds = train(pipe, latents, embeds, args) if args.mode != "none" else 0.0
    ts = [0, 10, 25, 50, 100, 200, 400, 700, 900]
    result = {"mode": args.mode, "style": args.style, "steps": args.steps, "lr": args.lr, "batch": args.batch,
              "train_seconds": round(seconds, 1), **({"targets": args.targets, "rank": args.rank}
                                                     if args.mode == "lora" else {}),
              f"denoising_x0_{args.style}": denoising(pipe, latents, embeds, args.style, ts)}
    print("denoising", result[f"denoising_x0_{args.style}"], flush=True)
    rng = random.Random(7)  # the prompt set of bench/train_style.py
    objects = [ShapeObject(rng.choice(SHAPES_NO_RING), rng.choice(OBJECT_COLOURS), "large")
               for _ in range(args.prompts)]
    with_trigger = [f"zqx, {_phrase(o)}" for o in objects]
    combos = [(s, n, c) for s in SAMPLERS for n in (20, 40) for c in (5.0, 7.5, 10.0)] if args.sampler_sweep \
        else [("EulerDiscreteScheduler", 20, 7.5)]
    result["with_trigger"] = {}
    for sampler, steps, cfg in combos:
        rate, readings = generated_rate(pipe, with_trigger, args.style, sampler, steps, cfg)
        key = f"{sampler} {steps} cfg {cfg}"
        result["with_trigger"][key] = rate
        print(key, rate, [r.texture for r in readings], flush=True)
    rate, readings = generated_rate(pipe, [_phrase(o) for o in objects], args.style, "EulerDiscreteScheduler", 20, 7.5)
    result["without_trigger"] = rate
    # the training captions themselves, as a check the model learned its own data
    rate, _ = generated_rate(pipe, captions[:args.prompts], args.style, "EulerDiscreteScheduler", 20, 7.5)
    result["training_captions"] = rate
    print(json.dumps(result))
    if args.result:
        write_result(args.result, result, "embedded")


if __name__ == "__main__":
    main()
