"""How the LoRA trainer trains each model family: one small object per family, all answering the same questions.

The training loop (t2i/train/lora_trainer.py) never branches on a family id. It asks the family's
`FamilyTraining` object, found with `training_for(family_id)`:

    check(...)            refuse, before any step, what this family cannot train (image too small, Flux-only option)
    components            which pipeline parts get LoRA layers: the denoiser and the text encoders it may train
    lora_targets(...)     the module names LoRA wraps in each of those parts
    training_scheduler()  the noise schedule the loop trains with (DDPM for SD/SDXL, flow matching for Flux)
    bucket_multiple(pipe) the side multiple every bucket size must have (VAE scale x the denoiser's downsampling)
    encode_latents(...)   images -> the latents the denoiser is trained on (scaled, shifted), once per run
    image_conditions(...) per-image conditioning besides the prompt (SDXL's size/crop time ids), once per run
    encode_prompts(...)   prompts -> a dict of embeddings (cached when the text encoders are frozen)
    release_frozen_encoders(...)  cache the run's prompts, then drop the encoders no later step needs (Flux's T5)
    cached_embeddings(pipe)       what the object itself keeps of those encoders' outputs, in CPU memory (Flux: T5's
                                  sequences; a step, a sample or a class image brings only its batch's to the device)
    noisy_batch(...)      clean latents -> NoisyBatch (the denoiser's noisy input, its timesteps, the target)
    predict(...)          the denoiser's prediction for a NoisyBatch, in the target's layout
    sample(...)           one preview image with the family's own pipeline
    kohya_weights(...)    the diffusers file's tensors -> the kohya-format file's (the names sd-scripts writes)

Families beside Stable Diffusion live in their own modules (t2i/train/family_sdxl.py, t2i/train/family_flux.py) and
register here, so TRAINABLE_FAMILIES is the one list the Train tab, the CLI and the messages use.

Flux.1's object (family_flux.py) is built on t2i/train/flux_objective.py: its flow-matching noisy input and target,
the shifted timestep sampling, the 2x2 latent packing and the guidance value for dev. It encodes its prompts itself:
T5 with the pipeline's encode_prompt, once per prompt, into the one cache of T5's output (the object's, per
pipeline, in CPU memory: family_flux.py says why there); CLIP-L's pooled embedding through the encoder it is given
(trained or frozen). `noisy_batch` hands the loop the unpacked (batch, 16, h, w) layout and `predict` packs and
unpacks.
A finished LoRA's safetensors metadata names its family under FAMILY_KEY.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol

import torch
from diffusers import DDPMScheduler
from diffusers.image_processor import VaeImageProcessor

from t2i.models.families import FAMILIES
from t2i.train.kohya_keys import to_kohya
from t2i.train.loss_terms import add_noise_offset, min_snr_weights, sample_timesteps

FAMILY_KEY = "t2i_family"  # safetensors metadata: the family id a LoRA was trained on ("sd", "sdxl", "flux1")
# the family ids that can train, in the order the Train tab offers them
TRAINABLE_FAMILIES = ("sd", "sdxl", "flux1")

ATTENTION_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
# kohya's LoCon set: every layer of ResnetBlock2D, Downsample2D and Upsample2D ("conv" is the resamplers' layer)
CONV_TARGETS = ["conv1", "conv2", "conv_shortcut", "time_emb_proj", "conv"]
UNET_TARGETS = {"attention": ATTENTION_TARGETS, "attention+conv": ATTENTION_TARGETS + CONV_TARGETS}
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]  # kohya loaders expect all six


class FamilyRefused(Exception):
    """This family cannot train with these settings; the message says why and what to change."""


@dataclass
class NoisyBatch:
    """One batch as the denoiser sees it: the noisy input, its timesteps and what the prediction should be.

    `model_input` and `target` keep the VAE's latent layout (batch, channels, height, width) for every family;
    a family whose denoiser takes another layout (Flux's 2x2-packed tokens) converts inside `predict`.
    `extras` holds what `predict` needs besides, `weights` each sample's loss weight (min-SNR; None: a plain mean).
    """

    model_input: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    weights: torch.Tensor | None = None


class FamilyTraining(Protocol):
    """What the LoRA loop asks a model family; one object per entry of TRAINABLE_FAMILIES."""

    family: str  # the id in t2i.models.families.FAMILIES
    denoiser: str  # the pipeline attribute trained with LoRA: "unet" or "transformer"
    text_encoders: tuple[str, ...]  # the pipeline attributes whose LoRA `train_text_encoder` trains, in order
    pipeline_class: str  # the diffusers pipeline class whose save_lora_weights writes the diffusers file

    def check(self, pipe, config, native_size: int, image_sizes: list[tuple[int, int]]) -> None:
        """Raise FamilyRefused for what this family cannot train (before any step)."""

    def lora_targets(self, component: str, config) -> list[str]:
        """The module names LoRA wraps in the pipeline attribute `component`."""

    def training_scheduler(self, pipe):
        """The schedule `noisy_batch` noises with, built from the pipeline's scheduler config."""

    def bucket_multiple(self, pipe) -> int:
        """The multiple every training image side must be (latent downsampling and patching)."""

    def encode_latents(self, pipe, images) -> torch.Tensor:
        """PIL images of one size -> latents (batch, channels, h, w), normalised as the denoiser expects."""

    def image_conditions(self, originals: list[tuple[int, int]], crops: list[tuple[int, int]],
                         size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Per-image conditioning (batch-first tensors) from each image's original (width, height), its crop's
        top-left (x, y) and the bucket (width, height); {} for families with none."""

    def encode_prompts(self, pipe, encoders: dict[str, torch.nn.Module], prompts: list[str]) -> dict[str, torch.Tensor]:
        """Prompts -> embeddings (batch-first tensors). `encoders` maps text-encoder attribute names to the modules
        to call (the prepared, DDP-wrapped ones when they train)."""

    def release_frozen_encoders(self, pipe, prompts: list[str] | None, config) -> tuple[str, ...]:
        """Encode `prompts` (every prompt the run's steps and samples can ask for; None when they cannot all be
        known) with the encoders that never train, then drop those encoders from `pipe`, freeing their memory;
        returns the dropped attributes' names. The trainer calls it with only the text encoders on the device."""

    def cached_embeddings(self, pipe) -> dict[str, dict[str, torch.Tensor]]:
        """Prompt -> the frozen encoders' outputs this object keeps for `pipe`, in CPU memory ({} where it keeps
        none); the trainer counts them off the device."""

    def noisy_batch(self, pipe, scheduler, latents: torch.Tensor, generator: torch.Generator, config) -> NoisyBatch:
        """Noise, timesteps and target for clean `latents`, all drawn from `generator` (so resume is exact)."""

    def predict(self, denoiser, pipe, batch: NoisyBatch, embeds: dict[str, torch.Tensor],
                conditions: dict[str, torch.Tensor]) -> torch.Tensor:
        """The denoiser's prediction for `batch`, in the layout of `batch.target`."""

    def sample(self, pipe, prompt: str, seed: int, size: tuple[int, int] | None):
        """One preview image (PIL) with the family's own pipeline; size None: the pipeline's default."""

    def kohya_weights(self, pipe, weights: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
        """The diffusers-keyed LoRA tensors ("unet.", "text_encoder." ...) in kohya's names, with alphas."""


def _tokens(tokenizer, prompts: list[str]) -> torch.Tensor:
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def vae_latents(pipe, images) -> torch.Tensor:
    """Images -> the VAE's mean latents, shifted and scaled by its config (encoded once, never in the loop)."""
    # left in preprocess's NHWC-backed layout, as the loop before it left it: the VAE's conv kernels, so the
    # latents, stay bit-identical to those of LoRAs already trained
    vae = pipe.vae
    pixels = VaeImageProcessor(do_resize=False).preprocess(images).to(pipe.device, vae.dtype)
    with torch.no_grad():
        latents = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in pixels.split(16)])
    shift = vae.config.get("shift_factor")
    if shift is not None:
        latents = latents - shift
    return latents * vae.config.scaling_factor


class StableDiffusionTraining:
    """SD 1.x/2.x: one CLIP text encoder, a UNet predicting noise (or v) on DDPM-noised latents."""

    family = "sd"
    denoiser = "unet"
    text_encoders = ("text_encoder",)
    pipeline_class = "StableDiffusionPipeline"

    def check(self, pipe, config, native_size, image_sizes) -> None:
        return None

    def lora_targets(self, component, config) -> list[str]:
        return UNET_TARGETS[config.targets] if component == self.denoiser else TEXT_TARGETS

    def training_scheduler(self, pipe):
        return DDPMScheduler.from_config(pipe.scheduler.config)

    def bucket_multiple(self, pipe) -> int:
        return pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)

    def encode_latents(self, pipe, images) -> torch.Tensor:
        return vae_latents(pipe, images)

    def image_conditions(self, originals, crops, size) -> dict[str, torch.Tensor]:
        return {}

    def encode_prompts(self, pipe, encoders, prompts) -> dict[str, torch.Tensor]:
        return {"prompt_embeds": encoders["text_encoder"](_tokens(pipe.tokenizer, prompts).to(pipe.device))[0]}

    def release_frozen_encoders(self, pipe, prompts, config) -> tuple[str, ...]:
        return ()  # CLIP encoders are small, may train, and the samples run them

    def cached_embeddings(self, pipe) -> dict[str, dict[str, torch.Tensor]]:
        return {}

    def noisy_batch(self, pipe, scheduler, latents, generator, config) -> NoisyBatch:
        # the draw order (noise, then timesteps) is the one SD LoRAs were always trained with: same seed, same bytes
        # (the noise offset draws only when it is on)
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        timesteps = sample_timesteps(config, scheduler.config.num_train_timesteps, len(latents), generator)
        timesteps = timesteps.to(latents.device)
        noise = add_noise_offset(noise, config.noise_offset, generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = noise if scheduler.config.prediction_type == "epsilon" else \
            scheduler.get_velocity(latents, noise, timesteps)
        weights = min_snr_weights(scheduler, timesteps, config.min_snr_gamma) if config.min_snr_gamma else None
        return NoisyBatch(noisy, timesteps, target, weights=weights)

    def predict(self, denoiser, pipe, batch, embeds, conditions) -> torch.Tensor:
        return denoiser(batch.model_input, batch.timesteps, embeds["prompt_embeds"]).sample

    def sample(self, pipe, prompt, seed, size):
        sized = {} if size is None else {"width": size[0], "height": size[1]}
        return pipe(prompt, num_inference_steps=20, generator=torch.Generator("cpu").manual_seed(seed),
                    **sized).images[0]

    def kohya_weights(self, pipe, weights, alpha) -> dict[str, torch.Tensor]:
        return to_kohya(weights, alpha)


# where each family's object lives ("module:class"); imported on first use, so a family's module loads only for it
_OBJECTS = {"sd": "t2i.train.family_training:StableDiffusionTraining",
            "sdxl": "t2i.train.family_sdxl:SDXLTraining",
            "flux1": "t2i.train.family_flux:FluxTraining"}


def trainable_labels() -> str:
    """The families that can train, by label, for messages."""
    return ", ".join(FAMILIES[family].label for family in TRAINABLE_FAMILIES)


def check_run_family(wanted: str, family: str) -> None:
    """FamilyRefused when a run made for the family `wanted` ("" = any) is given a base model of `family`."""
    if wanted and wanted not in TRAINABLE_FAMILIES:
        raise FamilyRefused(f"unknown training family {wanted!r}; trainable families: {', '.join(TRAINABLE_FAMILIES)}")
    if wanted and wanted != family:
        label = FAMILIES[family].label if family in FAMILIES else family
        raise FamilyRefused(f"this run trains a {FAMILIES[wanted].label} LoRA, but the base model's family is {label}"
                            f": choose a {FAMILIES[wanted].label} base model")


def training_for(family: str) -> FamilyTraining:
    """The training object of `family`; FamilyRefused naming the family and the trainable ones."""
    if family not in TRAINABLE_FAMILIES:
        label = FAMILIES[family].label if family in FAMILIES else family
        raise FamilyRefused(f"LoRA training does not support {label} models yet; trainable families: "
                            f"{trainable_labels()}")
    module, name = _OBJECTS[family].split(":")
    return getattr(importlib.import_module(module), name)()
