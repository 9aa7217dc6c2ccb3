"""The fast path keeps images close to the slow path: pixel MAE within a stated tolerance, same analyzer reading.

Speed is measured in bench/, never here. Tolerances, as the mean over the prompts of each image's mean absolute
difference on 0..255 RGB: channels-last 0.5 (float rounding only), bf16 and `fast` 1.5, feature caching every 2nd step 6
(it moves an object's edge by a pixel or two; no single image may differ by more than 25). The analyzer must
read the same background and object colour, and the object's pixels must overlap (mask IoU >= 0.85).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from t2i.embedded.training.train_controlnet import foreground_mask, mask_iou
from t2i.generation.engine import Engine
from t2i.eval.analyzer import analyze
from t2i.generation.fastpath import FastPath, cpu_has_bf16, feature_cache, plan_for
from t2i.plugins import PluginManager
from t2i.request import GenerationRequest

PROMPTS = ("a small red star in the top left corner on a blue background",
           "a large green circle in the center on a white background",
           "a yellow heart at the bottom right on a purple background",
           "a purple triangle on a yellow background")
TOLERANCE = {"channels_last": 0.5, "low_precision": 1.5, "cache=2": 6.0, "fast": 1.5}
MAX_IMAGE_MAE = 25.0
SAME_OBJECT_IOU = 0.85  # foreground masks of the slow and fast image


def _engine(settings, speed: str) -> Engine:
    return Engine(dataclasses.replace(settings, speed=speed), plugins=PluginManager())


def _images(engine: Engine) -> list:
    return [engine.generate(GenerationRequest(prompt=p, seed=300 + i, steps=20)).images[0].image
            for i, p in enumerate(PROMPTS)]


def _reading(image) -> tuple:
    analysis = analyze(image)
    top = analysis.objects[0] if analysis.objects else None
    return analysis.background, top and top.colour


@pytest.fixture(scope="module")
def slow_images(settings):
    return _images(_engine(settings, "quality"))


@pytest.mark.parametrize("speed", list(TOLERANCE))
def test_switch_stays_close_to_the_slow_path(settings, slow_images, speed):
    if speed in ("low_precision", "fast") and not cpu_has_bf16():
        pytest.skip("this CPU has no native bfloat16: the switch is off here")
    fast = _images(_engine(settings, speed))
    maes = [float(np.abs(np.asarray(slow, dtype=np.float32) - np.asarray(quick, dtype=np.float32)).mean())
            for slow, quick in zip(slow_images, fast)]
    assert np.mean(maes) <= TOLERANCE[speed] and max(maes) <= MAX_IMAGE_MAE, f"{speed}: pixel MAE {maes}"
    for slow, quick in zip(slow_images, fast):
        assert _reading(quick) == _reading(slow)
        # the same object drawn: its pixels overlap (the analyzer's shape label is too fragile for this, a 2 px
        # spike on a circle made it read "triangle" at MAE 2.1)
        assert mask_iou(foreground_mask(quick), foreground_mask(slow)) >= SAME_OBJECT_IOU


def test_fast_path_is_deterministic_and_leaves_no_hooks(settings):
    engine = _engine(settings, "cache=2")
    request = GenerationRequest(prompt=PROMPTS[0], seed=5, steps=12)
    first = engine.generate(request).images[0].image.tobytes()
    assert engine.generate(request).images[0].image.tobytes() == first
    unet = engine.models.get("embedded").pipeline.unet
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:  # cached features do not outlive a run
        assert getattr(block, "_diffusers_hook", None) is None or not block._diffusers_hook.hooks


def test_low_precision_unet_runs_in_bf16_and_answers_in_float32(settings):
    if not cpu_has_bf16():
        pytest.skip("this CPU has no native bfloat16")
    engine = _engine(settings, "low_precision,channels_last")
    pipe = engine.models.get("embedded").pipeline
    assert pipe.unet.dtype == torch.bfloat16 and pipe.text_encoder.dtype == pipe.vae.dtype == torch.float32
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    sample = torch.randn(2, 4, 16, 16)
    with torch.inference_mode():
        out = pipe.unet(sample, torch.tensor(999), encoder_hidden_states=torch.randn(2, 77, 128), return_dict=False)[0]
    assert out.dtype == torch.float32 and out.shape == sample.shape and torch.isfinite(out).all()


def test_feature_cache_skips_deep_blocks_between_full_steps(engine):
    unet = engine.models.get("embedded").pipeline.unet
    calls = []
    handle = unet.mid_block.resnets[0].register_forward_hook(lambda *_: calls.append(1))
    sample, hidden = torch.randn(2, 4, 16, 16), torch.randn(2, 77, 128)
    try:
        with torch.inference_mode(), feature_cache(unet, 3):
            outputs = [unet(sample, torch.tensor(t), encoder_hidden_states=hidden).sample for t in (900, 800, 700, 600)]
    finally:
        handle.remove()
    # a layer inside the deep block runs on steps 1 and 4 only; steps 2 and 3 reuse the block's output
    assert len(calls) == 2
    assert not torch.equal(outputs[0], outputs[1])  # the shallow blocks still see each step's timestep


def test_sdpa_attention_is_the_default(engine):
    processors = engine.models.get("embedded").pipeline.unet.attn_processors.values()
    assert {type(p).__name__ for p in processors} == {"AttnProcessor2_0"}


def test_speed_values():
    cpu = torch.device("cpu")
    assert plan_for("quality", cpu) == FastPath()
    assert plan_for("channels_last, cache=3", cpu) == FastPath(channels_last=True, cache_interval=3)
    assert plan_for("low_precision", torch.device("cuda")).unet_dtype == torch.float16
    assert plan_for("auto", cpu, unet_parameters=5_000_000) == FastPath()  # the embedded model gains nothing
    assert plan_for("auto", cpu, unet_parameters=859_520_964) == plan_for("fast", cpu)  # SD 1.5's UNet
    fast = plan_for("fast", cpu)
    assert fast.channels_last and fast.cache_interval == 1  # caching costs fidelity: opt-in only
    for bad in ("turbo", "cache=0", "cache=x", "channels_last=1", ""):
        with pytest.raises(ValueError, match="T2I_SPEED"):
            plan_for(bad, cpu)
