"""Test helper: train tiny SDXL / Flux.1 LoRAs with the trainer script (straight, and killed then resumed) and
measure them: a fixed-draw loss on the training images, the tensors of the exported files, our engine's images.

The run helpers are test_train_lora's (how SD runs are made, started and watched); this module adds what the
other families need on top.
"""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file

from t2i.generation.engine import Engine
from t2i.request import GenerationRequest
from t2i.train.buckets import fit
from t2i.train.dataset import load_saved
from t2i.train.family_training import training_for
from test_train_lora import _events, _make_run, _trainer, _wait_for

# a tiny model's native size (64 px): buckets, latents and samples stay small
RESOLUTION = 64
# 8 steps at a high learning rate: enough to lower the loss on the 6 training images by more than 10%; samples only
# at the end (sample_every > steps)
RUN = {"steps": 8, "checkpoint_every": 4, "batch_size": 2, "rank": 4, "alpha": 4.0, "learning_rate": 2e-2,
       "prior_preservation": False, "sample_every": 100, "resolution": RESOLUTION, "caption_dropout": 0.0,
       "timestep_bias": "none", "min_snr_gamma": 0.0, "noise_offset": 0.0, "ema_decay": 0.0, "shuffle_tags": False,
       "lr_scheduler": "constant", "lr_warmup_steps": 0, "optimizer": "adamw"}


def train_straight_and_resumed(tmp_path: Path, base_model: Path, **overrides) -> tuple[Path, Path, Path]:
    """The same run twice: once straight through, once killed (SIGKILL) right after its first checkpoint and started
    again. Returns (the straight run's folder, its LoRA, the resumed run's LoRA)."""
    settings = {**RUN, "base_model": str(base_model), **overrides}
    straight = _make_run(tmp_path / "straight", **settings)
    process = _trainer(straight, tmp_path / "loras-straight", tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    lora = Path(out.strip().splitlines()[-1])

    killed = _make_run(tmp_path / "killed", **settings)
    process = _trainer(killed, tmp_path / "loras-killed", tmp_path)
    _wait_for(killed, process, lambda e: e["event"] == "checkpoint" and e["step"] == RUN["checkpoint_every"])
    process.send_signal(signal.SIGKILL)
    process.wait()
    process = _trainer(killed, tmp_path / "loras-killed", tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    starts = [e for e in _events(killed) if e["event"] == "start"]
    assert starts[-1]["resumed"] and starts[-1]["step"] == RUN["checkpoint_every"]  # continued from the checkpoint, not from scratch
    return straight, lora, Path(out.strip().splitlines()[-1])


def same_tensors(a: Path, b: Path) -> bool:
    """Whether two safetensors files hold the same names and bit-identical tensors."""
    first, second = load_file(str(a)), load_file(str(b))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def fixed_draw_loss(pipe, run: Path, draws: int = 6) -> float:
    """The family's training loss on the run's images and captions, over the same noise and timesteps every call
    (seeded), so a LoRA's effect on how well the model denoises its training set is measured, not the draw."""
    family = training_for(pipe_family(pipe))
    items = load_saved(run / "dataset").items
    images = [fit(item.image, (RESOLUTION, RESOLUTION)) for item in items]
    latents = family.encode_latents(pipe, images)
    conditions = family.image_conditions([item.image.size for item in items], [(0, 0)] * len(items),
                                         (RESOLUTION, RESOLUTION))
    with torch.no_grad():
        encoders = {name: getattr(pipe, name) for name in family.text_encoders}
        embeds = family.encode_prompts(pipe, encoders, [item.caption for item in items])
        scheduler, denoiser = family.training_scheduler(pipe), getattr(pipe, family.denoiser)
        generator, config = torch.Generator().manual_seed(0), _plain_options()
        losses = []
        for _ in range(draws):
            batch = family.noisy_batch(pipe, scheduler, latents, generator, config)
            prediction = family.predict(denoiser, pipe, batch, embeds, conditions)
            losses.append(torch.nn.functional.mse_loss(prediction.float(), batch.target.float()).item())
    return sum(losses) / len(losses)


def _plain_options():
    from t2i.train.config import config_from_preset

    return config_from_preset(name="probe", **{k: v for k, v in RUN.items() if k in ("timestep_bias", "min_snr_gamma",
                                                                                   "noise_offset")})


def pipe_family(pipe) -> str:
    from t2i.models.families import family_of

    return family_of(pipe).id


def load_pipeline(folder: Path):
    """The tiny model as diffusers loads it (CPU, float32)."""
    pipe = DiffusionPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def engine_images(settings, lora: Path, model: Path, prompt: str) -> dict[str, bytes]:
    """Our engine's image bytes for `prompt` with no LoRA and with each file of `lora`'s library at weight 0 and 1."""
    engine = Engine(dataclasses.replace(settings, lora_dir=lora.parent))

    def image(tag: str = "") -> bytes:
        request = GenerationRequest(prompt=f"{prompt} {tag}".strip(), model=str(model), seed=1, steps=3,
                                    width=RESOLUTION, height=RESOLUTION)
        return engine.generate(request).images[0].image.tobytes()

    images = {"plain": image()}
    for path in sorted(lora.parent.glob("*.safetensors")):
        name = path.name.removesuffix(".safetensors")
        images[f"{name}:0"], images[f"{name}:1"] = image(f"<lora:{name}:0>"), image(f"<lora:{name}:1>")
    images["plain again"] = image()
    return images
