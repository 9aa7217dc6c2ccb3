"""The Flux.1 training objective (t2i/train/flux_objective.py) on the tiny Flux.1 pipelines built offline."""

import pytest
import torch
from peft import LoraConfig

from t2i.models.tiny import build_pipeline
from t2i.train.flux_objective import (
    LORA_TARGETS, FlowMatchSettings, PromptCache, encode_latents, flow_target, flux_loss,
    guidance_input, noisy_input, pack_latents, sample_sigmas,
)

PROMPT = "a large zqx red star on a blue background"


def _images(batch: int = 1) -> torch.Tensor:
    """A fixed 64x64 picture in [-1, 1]: stripes in red, a ramp in green, a block in blue."""
    y, x = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    red = ((x // 8) % 2) * 2.0 - 1.0
    green = y / 31.5 - 1.0
    blue = ((x > 16) & (x < 48) & (y > 16) & (y < 48)).float() * 2.0 - 1.0
    return torch.stack([red, green, blue]).float().unsqueeze(0).repeat(batch, 1, 1, 1)


def _setup(variant: str = "dev", max_sequence_length: int = 32):
    pipe = build_pipeline("flux1", variant)
    cache = PromptCache(pipe, [PROMPT], max_sequence_length=max_sequence_length)
    return pipe, encode_latents(pipe.vae, _images()), cache


def test_shapes_of_latents_packing_prompts_and_loss():
    pipe, latents, cache = _setup()
    assert latents.shape == (1, 16, 8, 8)  # 64 px / 8, Flux's 16 latent channels
    packed, image_ids = pack_latents(latents.repeat(2, 1, 1, 1))
    assert packed.shape == (2, 16, 64) and image_ids.shape == (16, 3)  # 4x4 patches of 2x2x16 values
    assert image_ids[:, 1].max() == 3 and image_ids[:, 2].max() == 3
    sequence, pooled, text_ids = cache.embeddings([PROMPT, ""])
    assert sequence.shape == (2, 32, 32) and pooled.shape == (2, 32) and text_ids.shape == (32, 3)
    assert not torch.equal(sequence[0], sequence[1])
    loss = flux_loss(pipe.transformer, pipe.scheduler, latents.repeat(2, 1, 1, 1), [PROMPT, PROMPT], cache,
                     torch.Generator().manual_seed(0))
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    with pytest.raises(KeyError, match="not in the embedding cache"):
        cache.embeddings(["a prompt never cached"])


def test_latents_use_the_vae_shift_and_scale():
    pipe = build_pipeline("flux1", "dev")
    raw = pipe.vae.encode(_images()).latent_dist.mode()
    expected = (raw - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
    torch.testing.assert_close(encode_latents(pipe.vae, _images()), expected)


def test_noisy_input_runs_from_clean_latents_to_noise():
    latents = torch.randn(3, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(3, 16, 8, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(noisy_input(latents, noise, torch.zeros(3)), latents)
    assert torch.equal(noisy_input(latents, noise, torch.ones(3)), noise)
    mixed = noisy_input(latents, noise, torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(mixed[1], 0.75 * latents[1] + 0.25 * noise[1])
    assert torch.equal(flow_target(latents, noise), noise - latents)


def test_same_generator_state_gives_the_same_loss():
    pipe, latents, cache = _setup()
    settings = FlowMatchSettings(caption_dropout=0.5)
    batch, prompts = latents.repeat(4, 1, 1, 1), [PROMPT] * 4
    generator = torch.Generator().manual_seed(7)
    state = generator.get_state()
    first = flux_loss(pipe.transformer, pipe.scheduler, batch, prompts, cache, generator, settings)
    second = flux_loss(pipe.transformer, pipe.scheduler, batch, prompts, cache, generator, settings)
    generator.set_state(state)  # what a resumed run restores
    again = flux_loss(pipe.transformer, pipe.scheduler, batch, prompts, cache, generator, settings)
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


def test_dev_embeds_guidance_and_schnell_has_no_guidance_input():
    dev, schnell = build_pipeline("flux1", "dev"), build_pipeline("flux1", "schnell")
    assert torch.equal(guidance_input(dev.transformer, 2), torch.ones(2))
    assert torch.equal(guidance_input(dev.transformer, 1, 3.5), torch.tensor([3.5]))
    assert guidance_input(schnell.transformer, 2, 3.5) is None
    assert schnell.transformer.time_text_embed.__class__.__name__ == "CombinedTimestepTextProjEmbeddings"
    cache = PromptCache(schnell, [PROMPT], max_sequence_length=32)
    latents = encode_latents(schnell.vae, _images())
    loss = flux_loss(schnell.transformer, schnell.scheduler, latents, [PROMPT], cache, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss).all()


def test_lora_steps_lower_the_loss_on_a_memorised_image():
    pipe, latents, cache = _setup()
    transformer = pipe.transformer
    transformer.requires_grad_(False)
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=LORA_TARGETS))
    adapted = {name.rsplit(".lora_", 1)[0] for name, _ in transformer.named_parameters() if ".lora_A." in name}
    assert "transformer_blocks.0.attn.add_k_proj" in adapted and "single_transformer_blocks.1.proj_mlp" in adapted
    assert not any("norm" in name or "embedder" in name for name in adapted)
    parameters = [parameter for parameter in transformer.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=3e-2)
    batch, prompts = latents.repeat(8, 1, 1, 1), [PROMPT] * 8

    def held_out_loss():
        with torch.no_grad():
            return flux_loss(transformer, pipe.scheduler, batch, prompts, cache,
                             torch.Generator().manual_seed(1234)).mean().item()

    before = held_out_loss()
    generator = torch.Generator().manual_seed(0)
    for _ in range(25):
        loss = flux_loss(transformer, pipe.scheduler, batch, prompts, cache, generator).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_out_loss()
    assert after < 0.85 * before, (before, after)  # measured: 1.40 -> 1.08


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="timestep sampling"):
        FlowMatchSettings(timestep_sampling="sigmoid")
    with pytest.raises(ValueError, match="caption dropout"):
        FlowMatchSettings(caption_dropout=1.0)
    with pytest.raises(ValueError, match="not even"):
        pack_latents(torch.zeros(1, 16, 8, 7))
