"""How Flux.1 (dev, schnell) trains a LoRA: rectified flow matching on the transformer, with cached T5 and CLIP
embeddings; the objective's pieces (sigma sampling with the model's shift, noisy input, target, 2x2 packing, the
guidance input of dev) come from t2i/train/flux_objective.py, the kohya/BFL export from t2i/train/kohya_flux.py.

The transformer always trains; with `train_text_encoder` CLIP-L trains too (kohya's flux_train_network `lora_te1_`,
diffusers' `--train_text_encoder`): its pooled embedding is then computed per batch while T5's sequence stays cached.
T5 never trains here (sd-scripts' optional `train_t5xxl`, off by default there, is not offered), so the trainer has it
encode every prompt the run can ask for (captions and each order shuffled tags can give them, class and sample
prompts, the empty prompt of caption dropout) before the transformer comes to the device, and then drops it
(`release_frozen_encoders`): T5-XXL's 4.7B parameters are 19 GB in float32, the transformer's 11.9B 47.6 GB.

T5's output lives in one place, this object's cache (per pipeline, since dev and schnell differ in length): it is
the one place every reader of it passes through (the loss's embeddings, the samples, the class images), and it
outlives T5. The cache is kept in CPU memory, never on the training device: each sequence is moved there as soon as
T5 has encoded it, and only a batch's sequences go to the device, when a step (`predict`), a sample or a class
image (`sample`) needs them. On the real Flux.1-dev a sequence is 512 x 4096 float32 = 8.4 MB, so 256 tag orders
would hold 2.1 GB, and 1,000 captions 8.4 GB, of accelerator memory for data a step reads a batch at a time.
(Copying a batch of 2 from pageable memory is 16.8 MB, about a millisecond at PCIe speeds, a small fraction of a
step of the 11.9B transformer; pinned memory with non_blocking copies could hide even that, not measured: no GPU here.)
The trainer's TextEmbeddings (t2i/train/training_data.py), which caches each prompt's embeddings while the text
encoders are frozen, holds this cache's tensors, not copies: a one-prompt `encode_prompts` returns them as they
are (on the CPU). The DDPM-only options (min-SNR weighting, timestep bias) are refused: flow matching draws sigmas.
"""
from __future__ import annotations

import weakref

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

from t2i.train.family_training import TEXT_TARGETS, FamilyRefused, NoisyBatch, _tokens, vae_latents
from t2i.train.flux_objective import (
    LORA_TARGETS, FlowMatchSettings, flow_target, guidance_input, noisy_input, pack_latents, sample_sigmas,
)
from t2i.train.kohya_flux import to_kohya_flux
from t2i.train.kohya_keys import to_kohya

SAMPLE_STEPS = {True: 20, False: 4}  # dev (guidance embedded) and schnell (distilled to a few steps)
CACHE_DEVICE = torch.device("cpu")  # where T5's cached sequences live, whatever device trains


class FluxTraining:
    """Flux.1: flow matching on packed latents, LoRA on the transformer's attention and feed-forward layers (and on
    CLIP-L's attention and MLP when the text encoder trains)."""

    family = "flux1"
    denoiser = "transformer"
    text_encoders = ("text_encoder",)  # CLIP-L, when it trains; T5 (text_encoder_2) is frozen and cached
    pipeline_class = "FluxPipeline"

    def __init__(self):
        # pipeline -> prompt -> T5 sequence and text ids (frozen), on CACHE_DEVICE; per pipeline, since dev and
        # schnell differ in length
        self._t5_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def check(self, pipe, config, native_size, image_sizes) -> None:
        if getattr(config, "min_snr_gamma", 0):
            raise FamilyRefused("min-SNR weighting is for SD and SDXL (DDPM noise levels); Flux.1 trains by flow "
                                "matching: set min_snr_gamma to 0")
        if getattr(config, "timestep_bias", "none") != "none":
            raise FamilyRefused("the timestep bias is for SD and SDXL; Flux.1 draws its noise levels logit-normally "
                                "with the model's shift: set timestep_bias to 'none'")

    def lora_targets(self, component, config) -> str | list[str]:
        if component == self.text_encoders[0]:
            return TEXT_TARGETS  # CLIP's q/k/v/out_proj and fc1/fc2: sd-scripts' CLIPAttention + CLIPMLP
        return LORA_TARGETS  # a regex peft full-matches, covering both the double and the single blocks

    def training_scheduler(self, pipe):
        return FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)

    def bucket_multiple(self, pipe) -> int:
        return pipe.vae_scale_factor * 2  # latents are packed in 2x2 patches

    def encode_latents(self, pipe, images) -> torch.Tensor:
        return vae_latents(pipe, images)

    def image_conditions(self, originals, crops, size) -> dict[str, torch.Tensor]:
        return {}

    def encode_prompts(self, pipe, encoders, prompts) -> dict[str, torch.Tensor]:
        # T5's sequence once per prompt (T5 is frozen), as the cache holds it (on the CPU: `predict` brings a
        # batch's to the device); CLIP's pooled embedding through `encoders` (the trained, prepared CLIP when it
        # trains), on the device, as FluxPipeline._get_clip_prompt_embeds
        sequences = [self._t5(pipe, prompt) for prompt in prompts]
        pooled = encoders["text_encoder"](_tokens(pipe.tokenizer, prompts).to(pipe.device),
                                          output_hidden_states=False).pooler_output

        def joined(key):  # one prompt: the cache's own tensor, so a cache of these dicts holds no second copy
            return sequences[0][key] if len(sequences) == 1 else torch.cat([t5[key] for t5 in sequences])
        return {"prompt_embeds": joined("prompt_embeds"), "pooled": pooled.to(pipe.text_encoder.dtype),
                "text_ids": joined("text_ids")}

    def release_frozen_encoders(self, pipe, prompts, config) -> tuple[str, ...]:
        # T5 stays when the run's prompts cannot all be known ahead (too many orders of shuffled tags: None)
        if prompts is None or pipe.text_encoder_2 is None:
            return ()
        for prompt in prompts:
            self._t5(pipe, prompt)
        pipe.text_encoder_2 = None  # the pipeline held the only reference: its weights are freed
        return ("text_encoder_2",)

    def cached_embeddings(self, pipe) -> dict[str, dict[str, torch.Tensor]]:
        return self._t5_cache.get(pipe, {})

    def _t5(self, pipe, prompt: str) -> dict[str, torch.Tensor]:
        """T5's sequence and text ids of `prompt` from the pipeline's own encoding, encoded once."""
        cache = self._t5_cache.setdefault(pipe, {})
        if prompt not in cache:
            if pipe.text_encoder_2 is None:
                raise RuntimeError(f"T5 left the pipeline after the run's prompts were encoded; {prompt!r} was not "
                                   "one of them")
            with torch.no_grad():
                # on T5's device: the trainer encodes while the transformer is still off the training device
                sequence, _, text_ids = pipe.encode_prompt([prompt], prompt_2=None,
                                                           device=pipe.text_encoder_2.device,
                                                           max_sequence_length=self._sequence_length(pipe))
            # to the CPU at once: the device holds one prompt's sequence at a time, never the run's
            cache[prompt] = {"prompt_embeds": sequence.to(CACHE_DEVICE), "text_ids": text_ids[None].to(CACHE_DEVICE)}
        return cache[prompt]

    def noisy_batch(self, pipe, scheduler, latents, generator, config) -> NoisyBatch:
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        sequence_length = (latents.shape[2] // 2) * (latents.shape[3] // 2)
        sigmas = sample_sigmas(scheduler, FlowMatchSettings(), len(latents), sequence_length, generator)
        sigmas = sigmas.to(latents.device)
        return NoisyBatch(noisy_input(latents, noise, sigmas), sigmas, flow_target(latents, noise))

    def predict(self, denoiser, pipe, batch, embeds, conditions) -> torch.Tensor:
        latents = batch.model_input
        packed, image_ids = pack_latents(latents)
        transformer = getattr(denoiser, "module", denoiser)  # unwrapped for its config (DDP hides it)
        prediction = denoiser(
            hidden_states=packed, timestep=batch.timesteps.to(latents.dtype),  # sigmas: it scales by 1000 itself
            guidance=guidance_input(transformer, len(latents), FlowMatchSettings().guidance),
            pooled_projections=embeds["pooled"], encoder_hidden_states=embeds["prompt_embeds"].to(latents.device),
            txt_ids=embeds["text_ids"][0].to(latents.device), img_ids=image_ids, return_dict=False)[0]
        scale = pipe.vae_scale_factor
        return FluxPipeline._unpack_latents(prediction, latents.shape[2] * scale, latents.shape[3] * scale, scale)

    def sample(self, pipe, prompt, seed, size):
        # FluxPipeline's image for `prompt`: T5's sequence from the cache (T5 may have left the pipeline), brought
        # to the transformer's device (the pipeline does not move given embeddings), CLIP's pooled embedding from the
        # pipeline's CLIP as it is now (with its LoRA when it trains), as the pipeline would encode them itself
        steps = SAMPLE_STEPS[bool(pipe.transformer.config.guidance_embeds)]
        sized = {} if size is None else {"width": size[0], "height": size[1]}
        with torch.no_grad():
            pooled = self.encode_prompts(pipe, {"text_encoder": pipe.text_encoder}, [prompt])["pooled"]
        sequence = self._t5(pipe, prompt)["prompt_embeds"].to(pipe.transformer.device)
        return pipe(prompt_embeds=sequence, pooled_prompt_embeds=pooled,
                    num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(seed),
                    **sized).images[0]

    def kohya_weights(self, pipe, weights, alpha) -> dict[str, torch.Tensor]:
        # the transformer in BFL's names (lora_unet_double_blocks_...), CLIP-L as sd-scripts' lora_flux.py names it:
        # "lora_te1" + its transformers-4 module path (lora_te1_text_model_encoder_layers_0_self_attn_q_proj)
        clip = {key: value for key, value in weights.items() if key.startswith("text_encoder.")}
        transformer = {key: value for key, value in weights.items() if key not in clip}
        kohya = to_kohya_flux(transformer, alpha)
        if clip:
            kohya.update(to_kohya(clip, alpha, {"lora_te1_": "lora_te1_"}))
        return kohya

    @staticmethod
    def _sequence_length(pipe) -> int:
        # T5's limit: 512 for dev, 256 for schnell (diffusers' defaults), never past the tokenizer's own
        limit = 512 if pipe.transformer.config.guidance_embeds else 256
        return min(limit, pipe.tokenizer_2.model_max_length)
