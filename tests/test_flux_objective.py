"""The Flux.1 training objective (t2i/train/flux_objective.py) as the trainer runs it: through the Flux family's
`encode_latents`, `encode_prompts`, `noisy_batch` and `predict` (t2i/train/family_flux.py), on the tiny Flux.1
pipelines built offline."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers.image_processor import VaeImageProcessor
from peft import LoraConfig
from PIL import Image

from t2i.models.tiny import build_pipeline
from t2i.train.config import config_from_preset
from t2i.train.family_flux import FluxTraining
from t2i.train.flux_objective import (
    LORA_TARGETS, FlowMatchSettings, flow_target, guidance_input, noisy_input, pack_latents, sample_sigmas,
)

PROMPT = "a large zqx red star on a blue background"
FLUX = FluxTraining()
CONFIG = config_from_preset(name="probe", caption_dropout=0.0)  # Flux's noisy_batch reads none of its options


def _image() -> Image.Image:
    """A fixed 64x64 picture: stripes in red, a ramp in green, a block in blue."""
    y, x = np.mgrid[0:64, 0:64]
    red = ((x // 8) % 2) * 255
    green = y * 255 // 63
    blue = ((x > 16) & (x < 48) & (y > 16) & (y < 48)) * 255
    return Image.fromarray(np.stack([red, green, blue], axis=-1).astype(np.uint8))


def _loss(pipe, transformer, latents, embeds, generator) -> torch.Tensor:
    """The trainer's loss on one batch: the family's noisy batch and prediction, their mean squared error."""
    batch = FLUX.noisy_batch(pipe, FLUX.training_scheduler(pipe), latents, generator, CONFIG)
    prediction = FLUX.predict(transformer, pipe, batch, embeds, {})
    return F.mse_loss(prediction.float(), batch.target.float())


@pytest.fixture(scope="module")
def dev():
    """The tiny Flux.1-dev pipeline, the picture's latents and the prompt's embeddings, as the trainer caches them."""
    pipe = build_pipeline("flux1", "dev")
    with torch.no_grad():
        embeds = FLUX.encode_prompts(pipe, {"text_encoder": pipe.text_encoder}, [PROMPT])
    return pipe, FLUX.encode_latents(pipe, [_image()]), embeds


def _repeat(embeds: dict[str, torch.Tensor], count: int) -> dict[str, torch.Tensor]:
    return {key: value.repeat(count, *([1] * (value.ndim - 1))) for key, value in embeds.items()}


def test_shapes_of_latents_packing_prompts_and_loss(dev):
    pipe, latents, _ = dev
    assert latents.shape == (1, 16, 8, 8)  # 64 px / 8, Flux's 16 latent channels
    packed, image_ids = pack_latents(latents.repeat(2, 1, 1, 1))
    assert packed.shape == (2, 16, 64) and image_ids.shape == (16, 3)  # 4x4 patches of 2x2x16 values
    assert image_ids[:, 1].max() == 3 and image_ids[:, 2].max() == 3
    with torch.no_grad():
        embeds = FLUX.encode_prompts(pipe, {"text_encoder": pipe.text_encoder}, [PROMPT, ""])
    # T5 to the tokenizer's 512 tokens (dev's limit), pooled CLIP, one all-zero text id row per T5 token
    assert embeds["prompt_embeds"].shape == (2, 512, 32) and embeds["pooled"].shape == (2, 32)
    assert embeds["text_ids"].shape == (2, 512, 3) and not embeds["text_ids"].any()
    assert not torch.equal(embeds["prompt_embeds"][0], embeds["prompt_embeds"][1])
    batch = FLUX.noisy_batch(pipe, FLUX.training_scheduler(pipe), latents.repeat(2, 1, 1, 1),
                             torch.Generator().manual_seed(0), CONFIG)
    assert batch.model_input.shape == batch.target.shape == (2, 16, 8, 8) and batch.timesteps.shape == (2,)
    assert ((batch.timesteps > 0) & (batch.timesteps < 1)).all()  # sigmas, which the transformer scales by 1000
    with torch.no_grad():
        prediction = FLUX.predict(pipe.transformer, pipe, batch, embeds, {})
    assert prediction.shape == (2, 16, 8, 8) and torch.isfinite(prediction).all()  # unpacked to the target's layout


def test_latents_use_the_vae_shift_and_scale(dev):
    pipe, latents, _ = dev
    pixels = torch.from_numpy(np.asarray(_image(), dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    torch.testing.assert_close(VaeImageProcessor(do_resize=False).preprocess([_image()]), pixels)
    with torch.no_grad():
        raw = pipe.vae.encode(pixels).latent_dist.mean
    assert pipe.vae.config.shift_factor != 0 and pipe.vae.config.scaling_factor != 1
    expected = (raw - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
    torch.testing.assert_close(latents, expected)


def test_noisy_input_runs_from_clean_latents_to_noise():
    latents = torch.randn(3, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(3, 16, 8, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(noisy_input(latents, noise, torch.zeros(3)), latents)
    assert torch.equal(noisy_input(latents, noise, torch.ones(3)), noise)
    mixed = noisy_input(latents, noise, torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(mixed[1], 0.75 * latents[1] + 0.25 * noise[1])
    assert torch.equal(flow_target(latents, noise), noise - latents)


def test_same_generator_state_gives_the_same_loss(dev):
    pipe, latents, embeds = dev
    batch, embeds = latents.repeat(4, 1, 1, 1), _repeat(embeds, 4)
    generator = torch.Generator().manual_seed(7)
    state = generator.get_state()
    with torch.no_grad():
        first = _loss(pipe, pipe.transformer, batch, embeds, generator)
        second = _loss(pipe, pipe.transformer, batch, embeds, generator)
        generator.set_state(state)  # what a resumed run restores
        again = _loss(pipe, pipe.transformer, batch, embeds, generator)
    assert torch.equal(first, again)
    assert not torch.equal(first, second)


def test_sigmas_follow_the_scheduler_shift():
    dev, schnell = build_pipeline("flux1", "dev"), build_pipeline("flux1", "schnell")
    settings = FlowMatchSettings(timestep_sampling="uniform")
    draw = lambda pipe, settings: sample_sigmas(pipe.scheduler, settings, 256, 16, torch.Generator().manual_seed(3))
    uniform = torch.rand(256, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(draw(schnell, settings), uniform)  # schnell's scheduler does not shift
    shifted = draw(dev, settings)  # dev shifts by image size, as its sampler does
    assert (shifted >= uniform).all() and (shifted > uniform + 0.05).any()
    fixed = draw(dev, FlowMatchSettings(timestep_sampling="uniform", shift=3.0))
    torch.testing.assert_close(fixed, 3 * uniform / (1 + 2 * uniform))
    logit = draw(schnell, FlowMatchSettings(logit_mean=0.5, logit_std=0.8))
    normal = torch.normal(0.5, 0.8, size=(256,), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(logit, torch.sigmoid(normal))  # logit-normal: a normal draw through the sigmoid


def test_dev_embeds_guidance_and_schnell_has_no_guidance_input(dev):
    schnell = build_pipeline("flux1", "schnell")
    assert torch.equal(guidance_input(dev[0].transformer, 2), torch.ones(2))
    assert torch.equal(guidance_input(dev[0].transformer, 1, 3.5), torch.tensor([3.5]))
    assert guidance_input(schnell.transformer, 2, 3.5) is None
    assert schnell.transformer.time_text_embed.__class__.__name__ == "CombinedTimestepTextProjEmbeddings"
    with torch.no_grad():
        embeds = FLUX.encode_prompts(schnell, {"text_encoder": schnell.text_encoder}, [PROMPT])
        assert embeds["prompt_embeds"].shape[1] == 256  # schnell's T5 limit
        loss = _loss(schnell, schnell.transformer, FLUX.encode_latents(schnell, [_image()]), embeds,
                     torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


def test_lora_steps_lower_the_loss_on_a_memorised_image(dev):
    pipe, latents, embeds = dev
    pipe = build_pipeline("flux1", "dev")  # its own transformer: the LoRA stays out of the fixture's
    transformer = pipe.transformer
    transformer.requires_grad_(False)
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                       target_modules=FLUX.lora_targets("transformer", CONFIG)))
    assert FLUX.lora_targets("transformer", CONFIG) == LORA_TARGETS
    adapted = {name.rsplit(".lora_", 1)[0] for name, _ in transformer.named_parameters() if ".lora_A." in name}
    assert "transformer_blocks.0.attn.add_k_proj" in adapted and "single_transformer_blocks.1.proj_mlp" in adapted
    assert not any("norm" in name or "embedder" in name for name in adapted)
    parameters = [parameter for parameter in transformer.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=3e-2)
    batch, embeds = latents.repeat(8, 1, 1, 1), _repeat(embeds, 8)

    def held_out_loss():
        with torch.no_grad():
            return _loss(pipe, transformer, batch, embeds, torch.Generator().manual_seed(1234)).item()

    before = held_out_loss()
    generator = torch.Generator().manual_seed(0)
    for _ in range(25):
        loss = _loss(pipe, transformer, batch, embeds, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_out_loss()
    assert after < 0.85 * before, (before, after)  # measured: 1.39 -> 1.08


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="timestep sampling"):
        FlowMatchSettings(timestep_sampling="sigmoid")
    with pytest.raises(ValueError, match="logit std"):
        FlowMatchSettings(logit_std=0.0)
    with pytest.raises(ValueError, match="shift"):
        FlowMatchSettings(shift=-1.0)
    with pytest.raises(ValueError, match="not even"):
        pack_latents(torch.zeros(1, 16, 8, 7))
