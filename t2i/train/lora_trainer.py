"""The LoRA / DreamBooth-LoRA training script; it runs in its own process, never inside the web server.

    python -m t2i.train.lora_trainer RUN_DIR --lora-dir DIR
    accelerate launch --multi_gpu --num_processes N -m t2i.train.lora_trainer RUN_DIR --lora-dir DIR

With several processes (T2I_TRAIN_PROCESSES; NCCL on GPUs, gloo on CPU) each rank draws its own batches from
its own generator (seeded by rank), DDP averages the gradients of the UNet's and the text encoder's LoRA layers,
and only the main process takes the locks, logs, samples, checkpoints and exports.

RUN_DIR holds config.json (a TrainingConfig) and dataset/ (written by Dataset.save). The script appends
JSON lines to RUN_DIR/progress.jsonl (start, step, checkpoint, sample, done, error), writes checkpoints to
RUN_DIR/checkpoints and continues from the newest one when started again (after a crash or kill -9), and
finally writes the LoRA into the library folder. All training randomness comes from one torch.Generator
whose state is checkpointed, so a resumed run continues the exact same sequence.

Like diffusers' training scripts it reads as one procedure, top to bottom (load, prepare, loop, checkpoint,
sample, export); the reusable parts live beside it (dataset, buckets, resume, export, locks, ranks, progress_log).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, gather_object
from diffusers import DDPMScheduler
from diffusers.image_processor import VaeImageProcessor
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from t2i.generation.engine import VERSION
from t2i.models.cache import ModelCache
from t2i.request import RequestError
from t2i.settings import Settings

from t2i.train.buckets import assign_buckets, fit
from t2i.train.resume import LoraCheckpoints, WorldSizeChanged
from t2i.train.config import TrainingConfig
from t2i.train.dataset import load_saved
from t2i.train.export import export_lora, lora_metadata, model_card
from t2i.train.locks import RunBusy, main_process_locks
from t2i.train.progress_log import ProgressLog
from t2i.train.ranks import die_with_launcher, rank_seed, weights_digest
from t2i.train.runner import BUSY_EXIT

ATTENTION_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
# kohya's LoCon set: every layer of ResnetBlock2D, Downsample2D and Upsample2D ("conv" is the resamplers' layer)
CONV_TARGETS = ["conv1", "conv2", "conv_shortcut", "time_emb_proj", "conv"]
UNET_TARGETS = {"attention": ATTENTION_TARGETS, "attention+conv": ATTENTION_TARGETS + CONV_TARGETS}
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]  # kohya loaders expect all six


class TrainingStopped(Exception):
    """Training cannot go on; the message says why and what to change."""


@dataclass
class TrainingData:
    """Latents per bucket size, the prompt of every image, and the class-image latents for prior preservation."""

    latents: dict[tuple[int, int], torch.Tensor]
    members: dict[tuple[int, int], list[int]]  # image indices per bucket, in the order of `latents`
    prompts: list[str]
    class_latents: torch.Tensor | None
    class_prompts: list[str]


def _encode_images(vae, images, device) -> torch.Tensor:
    # left in preprocess's NHWC-backed layout, as the loop before it left it: the VAE's conv kernels, so the
    # latents, stay bit-identical to those of LoRAs already trained
    pixels = VaeImageProcessor(do_resize=False).preprocess(images).to(device, vae.dtype)
    with torch.no_grad():  # latents are encoded once: the VAE never runs in the training loop
        chunks = [vae.encode(c).latent_dist.mean for c in pixels.split(16)]
    return torch.cat(chunks) * vae.config.scaling_factor


def _class_images(pipe, config: TrainingConfig, prompts: list[str], folder: Path, resolution: int,
                  log: ProgressLog):
    """Class images from the base model (prior preservation), made once and kept for a resumed run."""
    folder.mkdir(exist_ok=True)
    from PIL import Image

    images = []
    for index, prompt in enumerate(prompts):
        path = folder / f"{index:04d}.png"
        if not path.exists():
            image = pipe(prompt, num_inference_steps=20, width=resolution, height=resolution,
                         generator=torch.Generator("cpu").manual_seed(config.seed + index)).images[0]
            image.save(path)
        images.append(Image.open(path).convert("RGB"))
    log.write("class_images", count=len(images))
    return images


def prepare_data(pipe, config: TrainingConfig, run_dir: Path, resolution: int, log: ProgressLog) -> TrainingData:
    """Bucket and encode the dataset (and class images) once."""
    dataset = load_saved(run_dir / "dataset")
    multiple = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    images = [item.image for item in dataset.items]
    groups = assign_buckets(images, resolution, multiple, config.buckets)
    latents = {size: _encode_images(pipe.vae, [fit(images[i], size) for i in members], pipe.device)
               for size, members in groups.items()}
    prompts = [_with_trigger(item.caption, config) if config.method == "lora" and config.use_captions and item.caption
               else config.instance_text for item in dataset.items]
    class_latents, class_prompts = None, []
    if config.prior_preservation:
        # the regularisation prompts when given; else DreamBooth: the class prompt; a style: each caption without
        # the trigger, so that the base model's own answer to it stays the answer when the trigger is absent
        sources = [_without_trigger(item.caption, config) for item in dataset.items if item.caption] \
            if config.method == "lora" else []
        sources = list(config.class_prompts) or sources or [config.class_text]
        class_prompts = [sources[i % len(sources)] for i in range(config.num_class_images)]
        made = _class_images(pipe, config, class_prompts, run_dir / "class_images", resolution, log)
        class_latents = _encode_images(pipe.vae, [fit(i, (resolution, resolution)) for i in made], pipe.device)
    return TrainingData(latents, groups, prompts, class_latents, class_prompts)


def _tokens(tokenizer, prompts: list[str]) -> torch.Tensor:
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


class TextEmbeddings:
    """Prompt embeddings: cached once when the text encoder is frozen, computed per batch when it trains (through
    `encoder`, the prepared one: DDP averages its LoRA gradients only for calls through its wrapper)."""

    def __init__(self, pipe, encoder, prompts: list[str], trained: bool):
        self.pipe, self.encoder, self.trained, self.cache = pipe, encoder, trained, {}
        if not trained:
            with torch.no_grad():
                for prompt in sorted(set(prompts) | {""}):
                    self.cache[prompt] = encoder(_tokens(pipe.tokenizer, [prompt]).to(pipe.device))[0]

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        if self.trained:
            return self.encoder(_tokens(self.pipe.tokenizer, prompts).to(self.pipe.device))[0]
        return torch.cat([self.cache[p] for p in prompts])


def _diffusion_loss(unet, schedule, latents, embeds, generator) -> torch.Tensor:
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    timesteps = torch.randint(0, schedule.config.num_train_timesteps, (len(latents),), generator=generator)
    timesteps = timesteps.to(latents.device)
    noisy = schedule.add_noise(latents, noise, timesteps)
    target = noise if schedule.config.prediction_type == "epsilon" else schedule.get_velocity(latents, noise, timesteps)
    return F.mse_loss(unet(noisy, timesteps, embeds).sample.float(), target.float())


def training_loss(unet, schedule, data: TrainingData, embeddings: TextEmbeddings, config: TrainingConfig,
                  generator: torch.Generator) -> torch.Tensor:
    """One batch from one bucket (plus a class batch with prior preservation); caption dropout applied."""
    sizes = list(data.latents)
    counts = torch.tensor([len(data.members[s]) for s in sizes], dtype=torch.float32)
    size = sizes[int(torch.multinomial(counts, 1, generator=generator))]
    pick = torch.randint(0, len(data.members[size]), (config.batch_size,), generator=generator)
    latents = data.latents[size][pick]
    dropped = torch.rand(config.batch_size, generator=generator) < config.caption_dropout
    prompts = ["" if drop else data.prompts[data.members[size][i]] for i, drop in zip(pick.tolist(), dropped)]
    loss = _diffusion_loss(unet, schedule, latents, embeddings(prompts), generator)
    if data.class_latents is not None:
        pick = torch.randint(0, len(data.class_latents), (config.batch_size,), generator=generator)
        class_embeds = embeddings([data.class_prompts[i] for i in pick.tolist()])
        loss = loss + config.prior_loss_weight * _diffusion_loss(unet, schedule, data.class_latents[pick],
                                                                 class_embeds, generator)
    return loss


def lora_weights(pipe, config: TrainingConfig) -> dict[str, torch.Tensor]:
    """The trained LoRA weights with "unet."/"text_encoder." prefixes (as diffusers files store them)."""
    weights = {f"unet.{k}": v for k, v in get_peft_model_state_dict(pipe.unet).items()}
    if config.train_text_encoder:
        weights.update({f"text_encoder.{k}": v for k, v in get_peft_model_state_dict(pipe.text_encoder).items()})
    return weights


def _restore(pipe, weights: dict[str, torch.Tensor]) -> None:
    for prefix, module in (("unet.", pipe.unet), ("text_encoder.", pipe.text_encoder)):
        part = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        if part:
            set_peft_model_state_dict(module, part)


def save_samples(pipe, config: TrainingConfig, prompts: list[str], run_dir: Path, step: int) -> list[str]:
    """A few images from the LoRA as it is now, same seed every time, so progress is comparable."""
    folder = run_dir / "samples"
    folder.mkdir(exist_ok=True)
    pipe.unet.eval()
    paths = []
    with torch.no_grad():
        for index, prompt in enumerate(prompts):
            image = pipe(prompt, num_inference_steps=20, generator=torch.Generator("cpu").manual_seed(config.seed)).images[0]
            path = folder / f"step-{step:06d}-{index}.png"
            image.save(path)
            paths.append(str(path))
    pipe.unet.train()
    return paths


def _accelerator(config: TrainingConfig, device: str) -> Accelerator:
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    precision = config.mixed_precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_gpu else "no"
    # the other ranks wait in a collective while the main process waits for the machine's training lock (another
    # run may hold it for hours) or samples: far longer than torch's 30-minute default
    waits = InitProcessGroupKwargs(timeout=timedelta(hours=24))
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=config.gradient_accumulation,
                       cpu=not on_gpu, kwargs_handlers=[waits])


def train(run_dir: Path, lora_dir: Path) -> Path:
    """Train (or continue) the run in `run_dir` (in every process of a multi-process launch); return the path of
    the finished LoRA."""
    config = TrainingConfig.load(run_dir / "config.json")
    config.validate()
    accelerator = _accelerator(config, Settings().device)
    log = ProgressLog(run_dir / "progress.jsonl", enabled=accelerator.is_main_process)
    with main_process_locks(accelerator, run_dir, log):
        try:
            return _train(run_dir, lora_dir, config, log, accelerator)
        except RequestError as exc:  # e.g. the base model cannot be loaded: resuming would fail the same way
            log.write("error", message=str(exc))
            raise TrainingStopped(str(exc)) from exc
        except WorldSizeChanged as exc:  # resumable once the number of processes matches
            log.write("error", message=str(exc), resumable=True)
            raise TrainingStopped(str(exc)) from exc
        except TrainingStopped as exc:
            log.write("error", message=str(exc))
            raise


def _train(run_dir: Path, lora_dir: Path, config: TrainingConfig, log: ProgressLog,
           accelerator: Accelerator) -> Path:
    settings = Settings()
    # the cores given to training are shared by its processes on this machine
    threads = max(1, (settings.train_threads or max(1, (os.cpu_count() or 2) // 2)) // accelerator.num_processes)
    torch.set_num_threads(threads)  # leave cores to the web server, which keeps generating meanwhile
    # float32 weights and no inference-only speed tricks (low precision, block caching): gradients flow here
    device = accelerator.device.type if accelerator.device.type == "cpu" else str(accelerator.device)  # not cpu:0
    model = ModelCache(replace(settings, device=device, dtype="float32",
                               speed="quality")).get(config.base_model)
    if model.family != "sd":
        raise TrainingStopped(f"training supports Stable Diffusion 1.x/2.x models; {config.base_model!r} is SDXL")
    pipe = model.pipeline
    pipe.set_progress_bar_config(disable=True)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.requires_grad_(False)
    resolution = config.resolution or model.native_size
    with accelerator.main_process_first():  # the main process makes the class images; the others read them
        data = prepare_data(pipe, config, run_dir, resolution, log)

    # 1. LoRA layers (seeded, so a fresh start is reproducible) and the optimizer
    torch.manual_seed(config.seed)
    pipe.unet.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.alpha, init_lora_weights="gaussian",
                                     target_modules=UNET_TARGETS[config.targets]))
    groups = [{"params": [p for p in pipe.unet.parameters() if p.requires_grad], "lr": config.learning_rate}]
    if config.train_text_encoder:
        pipe.text_encoder.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.alpha,
                                                 init_lora_weights="gaussian", target_modules=TEXT_TARGETS))
        groups.append({"params": [p for p in pipe.text_encoder.parameters() if p.requires_grad],
                       "lr": config.text_encoder_lr})
    if accelerator.device.type == "cuda" and config.gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(groups)
    generator = torch.Generator().manual_seed(rank_seed(config.seed, accelerator.process_index))

    # 2. continue from the newest checkpoint, if any (accelerator.load_state, into the prepared run); the trained
    # text encoder is prepared like the UNet, so that DDP keeps the ranks' LoRA layers equal
    if config.train_text_encoder:
        unet, text_encoder, optimizer = accelerator.prepare(pipe.unet, pipe.text_encoder, optimizer)
    else:
        (unet, optimizer), text_encoder = accelerator.prepare(pipe.unet, optimizer), pipe.text_encoder
    embeddings = TextEmbeddings(pipe, text_encoder, data.prompts + data.class_prompts, config.train_text_encoder)
    checkpoints = LoraCheckpoints(accelerator, run_dir / "checkpoints", lambda: lora_weights(pipe, config),
                                  lambda weights: _restore(pipe, weights), optimizer, generator)
    start = checkpoints.resume()
    if not start and _had_steps(run_dir / "progress.jsonl"):
        log.write("note", message="the previous attempt stopped before its first checkpoint; starting clean")
    log.write("start", step=start, steps=config.steps, resumed=start > 0, images=len(data.prompts),
              device=str(accelerator.device), threads=threads, processes=accelerator.num_processes)
    schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    trained = [p for group in groups for p in group["params"]]
    sample_prompts = list(config.sample_prompts) or [data.prompts[0], _without_trigger(data.prompts[0], config)]

    # 3. the loop: one optimizer update per step, over `gradient_accumulation` micro-batches
    unet.train()
    bad, loss_value = 0, None
    for step in range(start + 1, config.steps + 1):
        began = time.time()
        for _ in range(config.gradient_accumulation):
            with accelerator.accumulate(unet, text_encoder):
                loss = training_loss(unet, schedule, data, embeddings, config, generator)
                # every rank skips together (one rank's backward alone would wait for the others' gradients)
                nonfinite = accelerator.reduce(torch.tensor(float(not torch.isfinite(loss)), device=loss.device),
                                               "sum")
                if nonfinite.item():
                    optimizer.zero_grad()
                    bad += 1
                    if bad >= config.max_bad_losses:
                        raise TrainingStopped(f"stopped at step {step}: {bad} losses in a row were NaN or infinite; "
                                              "lower the learning rate or the alpha and train again")
                    continue
                bad = 0
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trained, 1.0)
                optimizer.step()
                optimizer.zero_grad()
                loss_value = accelerator.reduce(loss.detach(), "mean").item()  # the mean over the ranks' batches
        log.write("step", step=step, steps=config.steps, loss=loss_value, seconds=round(time.time() - began, 4))
        if step % config.checkpoint_every == 0 and step < config.steps:
            checkpoints.save(step)  # every rank: each writes its own RNG state
            log.write("checkpoint", step=step)
        if config.sample_every and step % config.sample_every == 0 and accelerator.is_main_process:
            log.write("sample", step=step, images=save_samples(pipe, config, sample_prompts, run_dir, step),
                      prompts=sample_prompts)

    # 4. export into the LoRA library
    accelerator.wait_for_everyone()
    weights = lora_weights(pipe, config)
    rank_weights = gather_object([weights_digest(weights)])  # each rank's own: equal unless the ranks drifted
    if not accelerator.is_main_process:
        return lora_dir / f"{config.name}.safetensors"
    unet_weights = {k[len("unet."):]: v for k, v in weights.items() if k.startswith("unet.")}
    text_weights = {k[len("text_encoder."):]: v for k, v in weights.items() if k.startswith("text_encoder.")}
    size = len(data.prompts)
    exported = export_lora(
        lora_dir, config, unet_weights, text_weights, pipe.unet.peft_config["default"].to_dict(),
        pipe.text_encoder.peft_config["default"].to_dict() if config.train_text_encoder else None,
        lora_metadata(config, size, config.steps, VERSION), model_card(config, size, config.steps, loss_value, VERSION))
    images = save_samples(pipe, config, sample_prompts, run_dir, config.steps) if config.sample_every else []
    log.write("done", step=config.steps, steps=config.steps, lora=str(exported.diffusers), kohya=str(exported.kohya),
              card=str(exported.card), images=images, prompts=sample_prompts, rank_weights_sha256=rank_weights,
              final_loss=None if loss_value is None or not math.isfinite(loss_value) else loss_value)
    return exported.diffusers


def _with_trigger(caption: str, config: TrainingConfig) -> str:
    """The caption as trained: kept when it already names the trigger (a new colour word), else prefixed with it."""
    words = caption.replace(",", " ").split()
    return caption if config.trigger_word in words else f"{config.trigger_word}, {caption}"


def _without_trigger(prompt: str, config: TrainingConfig) -> str:
    words = [w for w in prompt.replace(",", " , ").split() if w != config.trigger_word]
    return " ".join(words).replace(" , ", ", ").strip(" ,") or config.class_text


def _had_steps(progress: Path) -> bool:
    if not progress.exists():
        return False
    return any('"event": "step"' in line for line in progress.read_text(encoding="utf-8").splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2i.train.lora_trainer", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--lora-dir", type=Path, default=None, help="LoRA library folder (default: T2I_LORA_DIR)")
    args = parser.parse_args(argv)
    die_with_launcher()
    try:
        print(train(args.run_dir, args.lora_dir or Settings().lora_dir))
    except TrainingStopped as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except RunBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BUSY_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
