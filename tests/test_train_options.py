"""The training options kohya and OneTrainer users expect: each changes what it claims (small tensors, no model)."""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image

from t2i.request import RequestError
from t2i.train.caption_tags import shuffle_tags
from t2i.train.config import PRESETS, TrainingConfig, config_from_preset, form_overrides
from t2i.train.ema import LoraEMA
from t2i.train.loss_terms import add_noise_offset, min_snr_weights, per_sample_mse, sample_timesteps
from t2i.train.optimizers import build_lr_scheduler, build_optimizer

BASE = TrainingConfig(name="options")


def _learning_rates(config: TrainingConfig, steps: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = build_optimizer([{"params": [param], "lr": 1.0}], config, "cpu")
    schedule = build_lr_scheduler(optimizer, config, steps)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        param.grad = torch.ones(2)
        optimizer.step()
        schedule.step()
    return rates


def test_lr_schedules_warm_up_then_follow_their_curve():
    linear = _learning_rates(replace(BASE, lr_scheduler="linear", lr_warmup_steps=4, steps=12), 12)
    assert linear == pytest.approx([0, 0.25, 0.5, 0.75, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])
    cosine = _learning_rates(replace(BASE, lr_scheduler="cosine", lr_warmup_steps=2, steps=10), 10)
    expected = [0, 0.5] + [0.5 * (1 + math.cos(math.pi * (s - 2) / 8)) for s in range(2, 10)]
    assert cosine == pytest.approx(expected)
    assert _learning_rates(replace(BASE, lr_scheduler="constant_with_warmup", lr_warmup_steps=2), 5) == \
        pytest.approx([0, 0.5, 1, 1, 1])
    assert _learning_rates(BASE, 4) == [1.0] * 4  # the default: as before the option existed


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_min_snr_weights_follow_the_formula(prediction):
    scheduler = DDPMScheduler(prediction_type=prediction)
    timesteps = torch.tensor([0, 10, 100, 500, 999])
    alphas = scheduler.alphas_cumprod[timesteps]
    snr = alphas / (1 - alphas)
    expected = torch.minimum(snr, torch.tensor(5.0)) / (snr if prediction == "epsilon" else snr + 1)
    weights = min_snr_weights(scheduler, timesteps, 5.0)
    assert torch.allclose(weights, expected, rtol=1e-5)
    assert weights[0] < 0.01  # the nearly clean timesteps, where SNR is huge, are damped
    assert torch.equal(min_snr_weights(scheduler, timesteps, 0.0), torch.ones(5))


def test_noise_offset_shifts_each_channel_mean():
    noise = torch.zeros(8, 4, 16, 16)
    shifted = add_noise_offset(noise, 0.1, torch.Generator().manual_seed(0))
    means = shifted.mean(dim=(2, 3))
    assert torch.allclose(shifted, means[:, :, None, None].expand_as(shifted))  # one shift per sample and channel
    assert 0.05 < means.std().item() < 0.15
    assert add_noise_offset(noise, 0.0, torch.Generator()) is noise


def test_masked_loss_ignores_masked_out_pixels():
    generator = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)
    mask = torch.ones(2, 1, 64, 64)
    mask[:, :, :, 32:] = 0  # the right half of the image (latent columns 4-7) is ignored
    loss = per_sample_mse(pred, target, mask)
    changed = pred.clone()
    changed[:, :, :, 4:] += 10
    assert torch.allclose(per_sample_mse(changed, target, mask), loss)
    assert not torch.allclose(per_sample_mse(changed, target), per_sample_mse(pred, target))
    changed[:, :, :, :4] += 1
    assert (per_sample_mse(changed, target, mask) != loss).all()
    assert torch.allclose(loss, ((pred - target) ** 2)[..., :4].mean(dim=(1, 2, 3)))


def test_ema_follows_the_decay_formula_and_differs_from_raw():
    param = torch.nn.Parameter(torch.zeros(3))
    ema = LoraEMA([param], decay=0.5)
    average = None
    for update, value in enumerate([1.0, 2.0, 4.0, 8.0], start=1):
        param.data.fill_(value)
        ema.update()
        decay = min(0.5, update / (9 + update)) if update > 1 else 0.0  # EMAModel's warm-up, capped at 0.5
        average = value if average is None else decay * average + (1 - decay) * value
    out = torch.nn.Parameter(torch.zeros(3))
    ema.copy_to([out])
    assert torch.allclose(out, torch.full((3,), average))
    assert not torch.allclose(out, param)
    again = LoraEMA([param], decay=0.5)
    again.load_state_dict(ema.state_dict())
    assert again.state_dict()["optimization_step"] == 4


def test_shuffle_keeps_the_first_tags_in_place():
    caption = "zqx, star, red, blue background, stripes, large"
    seen = set()
    for seed in range(20):
        shuffled = shuffle_tags(caption, 2, torch.Generator().manual_seed(seed)).split(", ")
        assert shuffled[:2] == ["zqx", "star"]
        assert sorted(shuffled) == sorted(caption.split(", "))
        seen.add(tuple(shuffled))
    assert len(seen) > 5


def test_timestep_bias_draws_low_noise_more_often_and_none_is_uniform():
    uniform = sample_timesteps(BASE, 1000, 4000, torch.Generator().manual_seed(3))
    assert torch.equal(uniform, torch.randint(0, 1000, (4000,), generator=torch.Generator().manual_seed(3)))
    low = sample_timesteps(replace(BASE, timestep_bias="low_noise", timestep_bias_multiplier=4.0), 1000, 4000,
                           torch.Generator().manual_seed(3))
    # 250 of 1000 timesteps at weight 4: 1000 / 1750 of the draws land there, against 25% uniformly
    assert abs((low < 250).float().mean().item() - 1000 / 1750) < 0.03
    assert abs((uniform < 250).float().mean().item() - 0.25) < 0.03


@pytest.mark.parametrize("name", ["adamw8bit", "prodigy"])
def test_gpu_optimizers_step_on_cpu(name):
    # bitsandbytes 0.50 has a CPU kernel for 8-bit AdamW, and Prodigy is plain torch: both train on CPU here.
    # bitsandbytes is the optional `gpu` extra (requirements-gpu.txt): without it the next test checks the error
    if name == "adamw8bit":
        pytest.importorskip("bitsandbytes")
    config = replace(BASE, optimizer=name, learning_rate=1.0 if name == "prodigy" else 1e-3)
    param = torch.nn.Parameter(torch.randn(64, 64, generator=torch.Generator().manual_seed(0)))
    before = param.detach().clone()
    optimizer = build_optimizer([{"params": [param], "lr": config.learning_rate}], config, "cpu")
    for _ in range(3):
        param.grad = param.detach().clone()
        optimizer.step()
    assert not torch.equal(param, before)
    if name == "adamw8bit":
        assert optimizer.state[param]["state1"].dtype == torch.uint8  # really the 8-bit state


def test_8bit_adamw_without_bitsandbytes_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as on an install without the `gpu` extra
    with pytest.raises(RequestError, match=r"pip install -r requirements-gpu.txt\); or use adamw"):
        build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1e-3}],
                        replace(BASE, optimizer="adamw8bit"), "cpu")


def test_option_errors_are_clear():
    with pytest.raises(RequestError, match="8-bit AdamW has no kernel for mps"):
        build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1e-3}],
                        replace(BASE, optimizer="adamw8bit"), "mps")
    with pytest.raises(RequestError, match="Prodigy finds its own step size"):
        config_from_preset(name="x1", optimizer="prodigy", learning_rate=1e-3)
    with pytest.raises(RequestError, match="optimizer must be one of"):
        replace(BASE, optimizer="lion").validate()
    with pytest.raises(RequestError, match="'constant' schedule has no warmup"):
        replace(BASE, lr_warmup_steps=10).validate()
    with pytest.raises(RequestError, match="ema_decay"):
        replace(BASE, ema_decay=0.2).validate()
    with pytest.raises(RequestError, match="family must be empty .the base model's. or one of sd, sdxl, flux1"):
        replace(BASE, family="sd3").validate()


def _save(path, size, colour):
    Image.new("RGB" if isinstance(colour, tuple) else "L", size, colour).save(path)


def test_masks_travel_with_their_images_and_a_wrong_size_is_refused(tmp_path):
    from t2i.train.dataset import load_saved, prepare_dataset

    for index, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        _save(tmp_path / f"shape{index}.png", (64, 48), colour)
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (0, 0, 32, 48))  # the left half is trained on
    mask.save(tmp_path / "shape1.mask.png")
    dataset = prepare_dataset([tmp_path])
    assert [item.mask is not None for item in dataset.items] == [False, True, False]
    assert "1 of 3 images have a loss mask" in dataset.notes
    saved = load_saved(dataset.save(tmp_path.parent / f"{tmp_path.name}-saved"))
    assert saved.items[1].mask.tobytes() == mask.tobytes() and saved.items[0].mask is None

    _save(tmp_path / "shape1.mask.png", (32, 32), 255)
    with pytest.raises(RequestError, match=r"the mask shape1.mask.png is 32x32 but shape1.png is 64x48"):
        prepare_dataset([tmp_path])
    (tmp_path / "shape1.mask.png").unlink()
    _save(tmp_path / "gone.mask.png", (64, 48), 255)
    with pytest.raises(RequestError, match="gone.mask.png is a mask, but there is no image gone"):
        prepare_dataset([tmp_path])


def test_cli_flags_reach_the_config():
    from t2i.cli import build_parser
    from t2i.train.command import _overrides

    args = build_parser().parse_args(
        ["train", "--images", "x", "--name", "flags", "--optimizer", "prodigy", "--learning-rate", "1.0",
         "--text-encoder-lr", "0.5",
         "--lr-scheduler", "cosine", "--lr-warmup-steps", "20", "--min-snr-gamma", "5", "--noise-offset", "0.05",
         "--shuffle-tags", "--keep-tokens", "2", "--ema-decay", "0.99", "--timestep-bias", "low_noise",
         "--family", "sdxl", "--rank", "32", "--alpha", "8", "--prior-loss-weight", "0.5"])
    config = config_from_preset(args.preset, name=args.name, **_overrides(args))
    assert (config.optimizer, config.lr_scheduler, config.lr_warmup_steps, config.min_snr_gamma, config.noise_offset,
            config.shuffle_tags, config.keep_tokens, config.ema_decay, config.timestep_bias, config.family) == \
        ("prodigy", "cosine", 20, 5.0, 0.05, True, 2, 0.99, "low_noise", "sdxl")
    assert (config.rank, config.alpha, config.prior_loss_weight) == (32, 8.0, 0.5)
    plain = build_parser().parse_args(["train", "--images", "x", "--name", "plain"])
    preset = config_from_preset(plain.preset, name="plain", **_overrides(plain))
    assert preset.optimizer == "adamw" and not preset.shuffle_tags  # no flag: the preset's values
    assert (preset.rank, preset.alpha, preset.prior_loss_weight) == (16, 16.0, 3.0)


def test_advanced_boxes_left_at_another_presets_values_are_the_chosen_presets():
    names = ("learning_rate", "text_encoder_lr", "optimizer", "lr_warmup_steps", "shuffle_tags", "timestep_bias",
             "rank", "alpha", "prior_loss_weight")
    quick = {name: getattr(PRESETS["quick style"], name) for name in names}
    # an API call naming "subject" with the boxes at their defaults (quick style's): subject's own values
    assert form_overrides(quick, "quick style", "subject") == {}
    changed = dict(quick, learning_rate=1.0, optimizer="prodigy", alpha=32.0)
    assert form_overrides(changed, "quick style", "subject") == {"learning_rate": 1.0, "optimizer": "prodigy",
                                                                 "alpha": 32.0}
    assert form_overrides(quick, "quick style", "quick style") == quick  # filled for this preset: all shown
    with pytest.raises(RequestError, match="lr_warmup_steps needs a value"):
        form_overrides(dict(quick, lr_warmup_steps=None), "quick style", "quick style")


def test_lora_lists_offer_only_the_loras_of_the_models_family(tmp_path):
    from safetensors.torch import save_file

    from plugins.lora.files import LoraLibrary
    from t2i.train.family_training import FAMILY_KEY

    library = tmp_path / "loras"
    (library / "flux_folder").mkdir(parents=True)
    weights = {"unet.down.lora_A.weight": torch.zeros(2, 4)}
    save_file(weights, library / "for_sd.safetensors", metadata={FAMILY_KEY: "sd"})
    save_file(weights, library / "for_sdxl.safetensors", metadata={FAMILY_KEY: "sdxl"})
    save_file(weights, library / "plain.safetensors")  # no family: offered everywhere, as before
    save_file(weights, library / "flux_folder" / "pytorch_lora_weights.safetensors", metadata={FAMILY_KEY: "flux1"})
    loras = LoraLibrary(library, 1 << 20)
    assert loras.names() == ["flux_folder", "for_sd", "for_sdxl", "plain"]
    assert loras.names("sd") == ["for_sd", "plain"]
    assert loras.names("sdxl") == ["for_sdxl", "plain"]
    assert loras.names("flux1") == ["flux_folder", "plain"]



@pytest.mark.slow  # the real app and a browser
def test_the_advanced_boxes_follow_the_preset_in_the_page_and_over_the_api(app_url, browser, tmp_path):
    from gradio_client import Client, handle_file
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(app_url)
    page.get_by_role("tab", name="Train").click()
    page.locator("#train_advanced").get_by_text("Advanced").click()
    rate = page.locator("#train_learning_rate input")
    expect(rate).to_have_value("0.001")  # the default preset, quick style
    prior_weight = page.locator("#train_prior_loss_weight input")
    expect(prior_weight).to_have_value("3")
    expect(page.locator("#train_rank input")).to_have_value("16")
    page.locator("#train_preset input").click()
    page.get_by_role("option", name="subject").click()
    expect(rate).to_have_value("0.002")
    expect(prior_weight).to_have_value("1")
    expect(page.locator("#train_optimizer input")).to_have_value("adamw")

    for index, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        _save(tmp_path / f"{index}.png", (64, 64), colour)
    client = Client(app_url, verbose=False)
    _, table, _ = client.predict([handle_file(str(tmp_path / f"{i}.png")) for i in range(3)], api_name="/train_check")
    # an API call naming "subject" and Prodigy, the rate boxes left alone: subject's own rate (2e-3), refused up front
    with pytest.raises(Exception, match=r"Prodigy finds its own step size: set learning_rate .* got 0.002"):
        client.predict(table, "subject", "(preset)", "api_options", "zqx", optimizer="prodigy",
                       api_name="/train_start")
    # the LoRA's alpha (kohya's network_alpha) is a box too, and reaches the run's settings: refused up front
    with pytest.raises(Exception, match=r"alpha must be a number from 0.001 to 1024; got 0"):
        client.predict(table, "quick style", "(preset)", "api_alpha", "zqx", alpha=0, api_name="/train_start")


def test_presets_adapt_to_the_family_they_train():
    from t2i.train.family_flux import FluxTraining

    for preset in PRESETS:
        plain = config_from_preset(preset, name="x1")
        flux = config_from_preset(preset, name="x1", family="flux1")
        assert plain.train_text_encoder and not flux.train_text_encoder  # the SD presets train the text encoder
        assert (flux.min_snr_gamma, flux.timestep_bias) == (0.0, "none")
        assert (flux.learning_rate, flux.steps, flux.rank) == (plain.learning_rate, plain.steps, plain.rank)
        FluxTraining().check(None, flux, 64, [(64, 64)])  # the adapted preset is one Flux trains
        FluxTraining().check(None, plain, 64, [(64, 64)])  # the SD preset too: Flux trains CLIP-L with it
    # a front end filled for Flux and sent unchanged leaves everything to the preset
    shown = {"min_snr_gamma": 0.0, "timestep_bias": "none"}
    assert form_overrides(shown, "quick style", "subject", "flux1") == {}
