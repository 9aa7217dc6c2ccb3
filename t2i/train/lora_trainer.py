"""The LoRA / DreamBooth-LoRA training script; it runs in its own process, never inside the web server.

    python -m t2i.train.lora_trainer RUN_DIR --lora-dir DIR
    accelerate launch --multi_gpu --num_processes N -m t2i.train.lora_trainer RUN_DIR --lora-dir DIR

With several processes (T2I_TRAIN_PROCESSES; NCCL on GPUs, gloo on CPU) each rank draws its own batches from
its own generator (seeded by rank), DDP averages the gradients of the UNet's and the text encoder's LoRA layers,
and only the main process takes the locks, logs, samples, checkpoints and exports.

Each model family (SD 1.x/2.x, SDXL, Flux.1) answers the family-specific questions (its text encoders and prompt
embeddings, noise and target, the denoiser's call, the LoRA targets, samples) through its FamilyTraining object
(t2i/train/family_training.py); this script holds the procedure they share.

RUN_DIR holds config.json (a TrainingConfig) and dataset/ (written by Dataset.save). The script appends
JSON lines to RUN_DIR/progress.jsonl (start, step, checkpoint, sample, done, error), writes checkpoints to
RUN_DIR/checkpoints and continues from the newest one when started again (after a crash or kill -9), and
finally writes the LoRA into the library folder. All training randomness comes from one torch.Generator
whose state is checkpointed, so a resumed run continues the exact same sequence.

Like diffusers' training scripts it reads as one procedure, top to bottom (load, prepare, loop, checkpoint,
sample, export); the reusable parts live beside it (lora_steps: the LoRA set-up and one update; training_data,
dataset, buckets, resume, export, locks, ranks, progress_log).
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
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, gather_object
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from t2i.generation.engine import VERSION
from t2i.models.cache import ModelCache
from t2i.request import RequestError
from t2i.settings import Settings

from t2i.train.caption_tags import every_tag_order, shuffle_tags
from t2i.train.ema import LoraEMA
from t2i.train.loss_terms import per_sample_mse
from t2i.train.optimizers import build_lr_scheduler, build_optimizer
from t2i.train.resume import LoraCheckpoints, WorldSizeChanged
from t2i.train.config import TrainingConfig
from t2i.train.dataset import load_saved
from t2i.train.training_data import (
    TextEmbeddings, TrainingData, class_prompts_of, prepare_data, trained_captions, without_trigger,
)
from t2i.train.export import export_lora, lora_metadata, model_card
from t2i.train.family_training import FamilyRefused, FamilyTraining, check_run_family, training_for
from t2i.train.locks import RunBusy, main_process_locks
from t2i.train.lora_steps import add_lora_layers, optimizer_update, trained_components
from t2i.train.progress_log import ProgressLog
from t2i.models.memory import resident_bytes
from t2i.train.quantised_base import base_bytes, check_base_quantization, training_settings
from t2i.train.ranks import die_with_launcher, rank_seed, weights_digest
from t2i.train.runner import BUSY_EXIT

# the most prompts shuffled tags may make for the run's T5 sequences to be encoded ahead (Flux.1-dev: 8.4 MB each in
# float32, 2.1 GB of CPU memory for 256, against T5's 19 GB on the device); beyond, T5 stays for the prompts the
# steps draw, as in sd-scripts, which cannot cache text-encoder outputs with --shuffle_caption
MAX_TAG_ORDERS = 256


class TrainingStopped(Exception):
    """Training cannot go on; the message says why and what to change."""


@dataclass
class Trainee:
    """What one loss needs: the family, the (prepared) denoiser, the pipeline, the noise schedule."""

    family: FamilyTraining
    denoiser: torch.nn.Module
    pipe: object
    schedule: object


def _diffusion_loss(trainee: Trainee, latents, conditions: dict[str, torch.Tensor], embeds,
                    config: TrainingConfig, generator, masks: torch.Tensor | None = None) -> torch.Tensor:
    batch = trainee.family.noisy_batch(trainee.pipe, trainee.schedule, latents, generator, config)
    prediction = trainee.family.predict(trainee.denoiser, trainee.pipe, batch, embeds, conditions)
    if batch.weights is None and masks is None:  # the plain mean, computed as it always was (same seed, same bytes)
        return F.mse_loss(prediction.float(), batch.target.float())
    weights = batch.weights if batch.weights is not None else torch.ones(len(prediction))
    return (per_sample_mse(prediction, batch.target, masks) * weights.to(prediction.device)).mean()


def _picked(conditions: dict[str, torch.Tensor], pick: torch.Tensor) -> dict[str, torch.Tensor]:
    return {key: value[pick] for key, value in conditions.items()}


def training_loss(trainee: Trainee, data: TrainingData, embeddings: TextEmbeddings, config: TrainingConfig,
                  generator: torch.Generator) -> torch.Tensor:
    """One batch from one bucket (plus a class batch with prior preservation); caption dropout applied."""
    sizes = list(data.latents)
    counts = torch.tensor([len(data.members[s]) for s in sizes], dtype=torch.float32)
    size = sizes[int(torch.multinomial(counts, 1, generator=generator))]
    pick = torch.randint(0, len(data.members[size]), (config.batch_size,), generator=generator)
    latents = data.latents[size][pick]
    dropped = torch.rand(config.batch_size, generator=generator) < config.caption_dropout
    prompts = ["" if drop else data.prompts[data.members[size][i]] for i, drop in zip(pick.tolist(), dropped)]
    if config.shuffle_tags:  # kohya's --shuffle_caption: the first keep_tokens tags (the trigger) stay in place
        prompts = [shuffle_tags(p, config.keep_tokens, generator) if p else p for p in prompts]
    masks = data.masks[size][pick] if data.masks is not None else None
    loss = _diffusion_loss(trainee, latents, _picked(data.conditions[size], pick), embeddings(prompts), config,
                           generator, masks)
    if data.class_latents is not None:
        pick = torch.randint(0, len(data.class_latents), (config.batch_size,), generator=generator)
        class_embeds = embeddings([data.class_prompts[i] for i in pick.tolist()])
        loss = loss + config.prior_loss_weight * _diffusion_loss(
            trainee, data.class_latents[pick], _picked(data.class_conditions, pick), class_embeds, config, generator)
    return loss


def lora_weights(pipe, family: FamilyTraining, config: TrainingConfig) -> dict[str, torch.Tensor]:
    """The trained LoRA weights prefixed with their component ("unet.", "text_encoder_2.", "transformer."), as
    diffusers files store them."""
    return {f"{component}.{key}": value for component in trained_components(family, config)
            for key, value in get_peft_model_state_dict(getattr(pipe, component)).items()}


def _restore(pipe, family: FamilyTraining, config: TrainingConfig, weights: dict[str, torch.Tensor]) -> None:
    for component in trained_components(family, config):
        prefix = f"{component}."
        part = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        if part:
            set_peft_model_state_dict(getattr(pipe, component), part)


def save_samples(pipe, family: FamilyTraining, config: TrainingConfig, prompts: list[str], run_dir: Path,
                 step: int, size: tuple[int, int] | None) -> list[str]:
    """A few images from the LoRA as it is now with the family's pipeline, same seed every time, so progress is
    comparable."""
    folder = run_dir / "samples"
    folder.mkdir(exist_ok=True)
    denoiser = getattr(pipe, family.denoiser)
    denoiser.eval()
    paths = []
    with torch.no_grad():
        for index, prompt in enumerate(prompts):
            image = family.sample(pipe, prompt, config.seed, size)
            path = folder / f"step-{step:06d}-{index}.png"
            image.save(path)
            paths.append(str(path))
    denoiser.train()
    return paths


def _accelerator(config: TrainingConfig, device: str) -> Accelerator:
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    precision = config.mixed_precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_gpu else "no"
    # the other ranks wait in a collective while the main process waits for the machine's training lock (another
    # run may hold it for hours) or samples: far longer than torch's 30-minute default
    waits = InitProcessGroupKwargs(timeout=timedelta(hours=24))
    # SDXL conditions on text_encoder's penultimate layer, so the LoRA of its last layer gets no gradient (as in
    # diffusers' SDXL script, which passes the same flag); DDP must be told, or it waits for that gradient
    unused = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=config.gradient_accumulation,
                       cpu=not on_gpu, kwargs_handlers=[waits, unused])


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
    # before loading: nf4 needs CUDA and a diffusers folder (bitsandbytes quantises while it loads)
    check_base_quantization(config.base_quantization, accelerator.device, config.base_model, settings)
    # loaded on the CPU and brought to the device in stages (step 0), so that an encoder the family drops (Flux's T5)
    # is never on the device with the denoiser; bitsandbytes puts an nf4 base's quantised parts there as it loads.
    # The generator's offloading (T2I_OFFLOAD) is not for training: the stages are the trainer's placement
    load_device = device if config.base_quantization == "nf4" else "cpu"
    model = ModelCache(replace(training_settings(settings, config.base_quantization), device=load_device,
                               offload="none", dtype="float32", speed="quality")).get(config.base_model)
    dataset = load_saved(run_dir / "dataset")
    try:
        check_run_family(config.family, model.family)
        family = training_for(model.family)
        pipe = model.pipeline
        native = model.native_size
        family.check(pipe, config, native, [item.image.size for item in dataset.items])
    except FamilyRefused as exc:
        raise TrainingStopped(f"{config.base_model!r}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    frozen_bytes = base_bytes(getattr(pipe, family.denoiser))  # the base's weights as they train (quantised or not)
    for part in (family.denoiser, "vae", *family.text_encoders):
        getattr(pipe, part).requires_grad_(False)
    resolution = config.resolution or native
    captions = trained_captions(dataset, config)
    sample_prompts = list(config.sample_prompts) or [captions[0], without_trigger(captions[0], config)]

    # 0. the text encoders alone on the device encode every prompt the run can ask for, and the ones that never
    # train and that no later step needs leave (Flux's T5: 19 GB in float32); then the rest comes (the denoiser)
    text_parts = [name for name, part in pipe.components.items()
                  if name.startswith("text_encoder") and isinstance(part, torch.nn.Module)]
    for name in text_parts:
        getattr(pipe, name).to(accelerator.device)
    # what this stage holds on the device (an nf4 base: all of it, placed while loading); on a CPU run, where the
    # model loads into the same memory, the bytes of the parts the stage has brought
    staged = text_parts if load_device == "cpu" else list(pipe.components)
    encoders_bytes = _placed_bytes(pipe, staged, accelerator.device)
    released = family.release_frozen_encoders(pipe, run_prompts(dataset, config, sample_prompts), config)
    # the text stage's peak is the encoders' bytes: the family keeps what they encoded in CPU memory (Flux's T5
    # sequences), so it does not grow with the number of prompts
    pipe.to(accelerator.device)
    with accelerator.main_process_first():  # the main process makes the class images; the others read them
        data = prepare_data(pipe, config, run_dir, resolution, log, family)

    # 1. LoRA layers (seeded, so a fresh start is reproducible) and the optimizer
    components = trained_components(family, config)
    groups = add_lora_layers(pipe, family, config)
    if accelerator.device.type == "cuda" and config.gradient_checkpointing:
        getattr(pipe, family.denoiser).enable_gradient_checkpointing()
    optimizer = build_optimizer(groups, config, accelerator.device)
    generator = torch.Generator().manual_seed(rank_seed(config.seed, accelerator.process_index))

    # 2. continue from the newest checkpoint, if any (accelerator.load_state, into the prepared run); the trained
    # text encoders are prepared like the denoiser, so that DDP keeps the ranks' LoRA layers equal
    *prepared, optimizer = accelerator.prepare(*[getattr(pipe, c) for c in components], optimizer)
    modules = {name: getattr(pipe, name) for name in (family.denoiser, *family.text_encoders)}
    modules.update(zip(components, prepared))
    denoiser = modules[family.denoiser]
    encoders = {name: modules[name] for name in family.text_encoders}
    embeddings = TextEmbeddings(pipe, family, encoders, data.prompts + data.class_prompts, config.train_text_encoder)
    checkpoints = LoraCheckpoints(accelerator, run_dir / "checkpoints", lambda: lora_weights(pipe, family, config),
                                  lambda weights: _restore(pipe, family, config, weights), optimizer, generator)
    trained = [p for group in groups for p in group["params"]]
    ema = LoraEMA(trained, config.ema_decay) if config.ema_decay else None
    if ema is not None:  # checkpointed beside the generator (registered after it, so older checkpoints still load)
        accelerator.register_for_checkpointing(ema)
    start = checkpoints.resume()
    # not prepared (accelerate would step it once per process) and not checkpointed: a schedule is a function of
    # the step, so a resumed run replays the steps done
    lr_schedule = build_lr_scheduler(optimizer, config, config.steps)
    for _ in range(start):
        lr_schedule.step()
    if not start and _had_steps(run_dir / "progress.jsonl"):
        log.write("note", message="the previous attempt stopped before its first checkpoint; starting clean")
    sample_size = None if resolution == native else (resolution, resolution)
    # the device's weights, LoRA and cached embeddings (Flux: CLIP's pooled ones when it is frozen); not the family's
    # cache in CPU memory, of which a step brings only its batch's sequences
    kept = family.cached_embeddings(pipe)
    training_bytes = _placed_bytes(pipe, list(pipe.components), accelerator.device) + _cached_bytes(
        accelerator.device, kept, embeddings.cache, besides=kept)
    log.write("start", step=start, steps=config.steps, resumed=start > 0, images=len(data.prompts),
              device=str(accelerator.device), threads=threads, processes=accelerator.num_processes,
              base_quantization=config.base_quantization, base_bytes=frozen_bytes, released_encoders=released,
              device_bytes={"before_release": encoders_bytes, "after_release": _placed_bytes(
                  pipe, staged, accelerator.device)},
              stage_bytes={"text_encoders": encoders_bytes, "training": training_bytes},
              host_cache_bytes=_cached_bytes(torch.device("cpu"), kept))
    trainee = Trainee(family, denoiser, pipe, family.training_scheduler(pipe))

    # 3. the loop: one optimizer update per step, over `gradient_accumulation` micro-batches
    denoiser.train()
    bad, loss_value = 0, None
    for step in range(start + 1, config.steps + 1):
        began = time.time()
        for _ in range(config.gradient_accumulation):
            with accelerator.accumulate(*prepared):
                loss = training_loss(trainee, data, embeddings, config, generator)
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
                optimizer_update(accelerator, loss, trained, optimizer, lr_schedule, ema)
                loss_value = accelerator.reduce(loss.detach(), "mean").item()  # the mean over the ranks' batches
        log.write("step", step=step, steps=config.steps, loss=loss_value, seconds=round(time.time() - began, 4))
        if step % config.checkpoint_every == 0 and step < config.steps:
            checkpoints.save(step)  # every rank: each writes its own RNG state
            log.write("checkpoint", step=step)
        # the last step's samples are made once, after export (with the EMA weights when there are any)
        if config.sample_every and step % config.sample_every == 0 and step < config.steps \
                and accelerator.is_main_process:
            log.write("sample", step=step, prompts=sample_prompts,
                      images=save_samples(pipe, family, config, sample_prompts, run_dir, step, sample_size))

    # 4. export into the LoRA library
    accelerator.wait_for_everyone()
    if ema is not None:  # the averaged weights are the ones exported (and sampled)
        ema.copy_to(trained)
    weights = lora_weights(pipe, family, config)
    rank_weights = gather_object([weights_digest(weights)])  # each rank's own: equal unless the ranks drifted
    if not accelerator.is_main_process:
        return lora_dir / f"{config.name}.safetensors"
    layers = {component: {k[len(component) + 1:]: v for k, v in weights.items() if k.startswith(f"{component}.")}
              for component in components}
    adapter_configs = {component: getattr(pipe, component).peft_config["default"].to_dict()
                       for component in components}
    size = len(data.prompts)
    exported = export_lora(
        lora_dir, config, family.pipeline_class, layers, adapter_configs,
        lambda tensors: family.kohya_weights(pipe, tensors, config.alpha),
        lora_metadata(config, size, config.steps, VERSION, family.family, resolution),
        model_card(config, size, config.steps, loss_value, VERSION, family=family.family))
    images = save_samples(pipe, family, config, sample_prompts, run_dir, config.steps, sample_size) \
        if config.sample_every else []
    log.write("done", step=config.steps, steps=config.steps, lora=str(exported.diffusers), kohya=str(exported.kohya),
              card=str(exported.card), images=images, prompts=sample_prompts, rank_weights_sha256=rank_weights,
              final_loss=None if loss_value is None or not math.isfinite(loss_value) else loss_value)
    return exported.diffusers


def run_prompts(dataset, config: TrainingConfig, sample_prompts: list[str]) -> list[str] | None:
    """Every prompt a run can encode: the captions as trained (with each order shuffled tags can give them), the
    empty prompt of caption dropout, the class and sample prompts; None when the shuffled orders are too many to
    encode ahead (more than MAX_TAG_ORDERS in all)."""
    captions = trained_captions(dataset, config)
    if config.shuffle_tags:
        orders = [every_tag_order(caption, config.keep_tokens, MAX_TAG_ORDERS) for caption in captions]
        if any(order is None for order in orders) or sum(map(len, orders)) > MAX_TAG_ORDERS:
            return None
        captions = [prompt for order in orders for prompt in order]
    return list(dict.fromkeys([*captions, "", *class_prompts_of(dataset, config), *sample_prompts]))


def _placed_bytes(pipe, parts: list[str], device: torch.device) -> int:
    """Bytes of the pipeline parts `parts` (those there are) resident on `device`."""
    modules = [getattr(pipe, name, None) for name in parts]
    return sum(size for name, size in resident_bytes([m for m in modules if isinstance(m, torch.nn.Module)]).items()
               if torch.device(name).type == device.type)


def _cached_bytes(device: torch.device, *caches: dict, besides: dict | None = None) -> int:
    """Bytes on `device` of the tensors in prompt caches (prompt -> name -> tensor), each storage counted once,
    leaving out the storages of `besides` (a cache kept in CPU memory, which on a CPU run is the device's too)."""
    def storages(cache):
        return {tensor.untyped_storage().data_ptr(): tensor.untyped_storage().nbytes()
                for tensors in cache.values() for tensor in tensors.values() if tensor.device.type == device.type}
    counted = {}
    for cache in caches:
        counted.update(storages(cache))
    for pointer in storages(besides or {}):
        counted.pop(pointer, None)
    return sum(counted.values())


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
