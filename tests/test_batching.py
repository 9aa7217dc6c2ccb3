"""Batching of queued requests (T2I_BATCH_MAX): fewer pipeline calls, and every request keeps its own images.

Calls are counted by a forward hook on the real UNet: each pipeline call runs `steps` UNet passes whose batch
is 2 x its images (CFG), so the batch sizes seen tell how requests were grouped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections import Counter

import numpy as np
import pytest

from t2i.generation.batching import batch_key
from t2i.generation.engine import Engine, GenerationCancelled
from t2i.eval.analyzer import analyze
from t2i.request import GenerationRequest, RequestError

STEPS = 20
PROMPTS = {"red": "a large red circle in the top left on a blue background",
           "blue": "a large blue square in the center on a white background",
           "green": "a large green triangle in the center on a white background",
           "yellow": "a large yellow star in the center on a black background"}


@pytest.fixture(scope="module")
def batching_engine(settings) -> Engine:
    # no window: run_together lets the requests in only once all of them wait, so groups never depend on timing
    return Engine(dataclasses.replace(settings, batch_max=4, batch_window_ms=0))


@contextlib.contextmanager
def unet_batches(engine: Engine, model: str = ""):
    """The batch size of every UNet pass of `model` while the block runs."""
    sizes: list[int] = []
    unet = engine.models.get(model).pipeline.unet
    handle = unet.register_forward_hook(lambda module, args, output: sizes.append(args[0].shape[0]))
    try:
        yield sizes
    finally:
        handle.remove()


def run_together(engine: Engine, requests: list[GenerationRequest], model: str = "", **per_request) -> list:
    """Run requests from one thread each; each outcome is a result or the exception raised. With batching on,
    `model`'s lock is held until every request waits in the batcher's queue, so the groups are the same on any
    machine, however slowly the threads start."""
    outcomes: list = [None] * len(requests)

    def work(index):
        try:
            outcomes[index] = engine.generate(requests[index], **{k: v[index] for k, v in per_request.items()})
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(requests))]
    if engine.settings.batch_max == 1:
        for thread in threads:
            thread.start()
    else:
        batcher = engine.batcher
        with engine.models.get(model).lock:
            for thread in threads:
                thread.start()
            with batcher._changed:  # notified whenever a request joins the queue
                assert batcher._changed.wait_for(lambda: len(batcher._waiting) == len(requests), timeout=120)
    for thread in threads:
        thread.join()
    return outcomes


def pixel_difference(first, second) -> int:
    return int(np.abs(np.asarray(first, int) - np.asarray(second, int)).max())


def assert_like_alone(engine: Engine, request: GenerationRequest, result) -> None:
    """Each image is within 2 levels of the same request run alone, with the same seeds and recipe."""
    alone = engine.generate(request)
    assert [item.seed for item in result.images] == [item.seed for item in alone.images]
    for batched, single in zip(result.images, alone.images):
        assert pixel_difference(batched.image, single.image) <= 2
        assert batched.parameters == single.parameters


@pytest.mark.slow  # many 20-step runs (about 95 s on 2 loaded cores)
def test_concurrent_requests_share_calls_and_keep_their_own_images(batching_engine, engine):
    requests = [GenerationRequest(prompt=prompt, seed=10 + i, steps=STEPS) for i, prompt in enumerate(PROMPTS.values())]
    with unet_batches(batching_engine) as sizes:
        results = run_together(batching_engine, requests)
    calls = len(sizes) // STEPS
    assert calls < len(requests) and max(sizes) > 2  # at least two requests in one call
    assert sum(sizes) == 2 * len(requests) * STEPS  # every image sampled exactly once
    for colour, request, result in zip(PROMPTS, requests, results):
        item = result.images[0]
        assert analyze(item.image).objects[0].colour == colour  # its own prompt, not a neighbour's
        assert (item.seed, item.parameters["prompt"]) == (request.seed, request.prompt)
        assert_like_alone(engine, request, result)


@pytest.mark.slow  # many 20-step runs (about 35 s on 2 loaded cores)
def test_batch_sizes_add_up_and_seeds_follow_each_request(batching_engine, engine):
    requests = [GenerationRequest(prompt=PROMPTS["red"], seed=70, batch_size=2, steps=STEPS),
                GenerationRequest(prompt=PROMPTS["blue"], seed=90, steps=STEPS)]
    with unet_batches(batching_engine) as sizes:
        results = run_together(batching_engine, requests)
    assert sizes == [6] * STEPS  # one call of 3 images
    assert [item.seed for item in results[0].images] == [70, 71]
    assert [analyze(item.image).objects[0].colour for item in results[0].images] == ["red", "red"]
    assert analyze(results[1].images[0].image).objects[0].colour == "blue"
    for request, result in zip(requests, results):
        assert_like_alone(engine, request, result)


def test_an_incompatible_request_runs_alone(batching_engine):
    requests = [GenerationRequest(prompt=PROMPTS["red"], seed=1, steps=STEPS),
                GenerationRequest(prompt=PROMPTS["blue"], seed=2, steps=STEPS),
                GenerationRequest(prompt=PROMPTS["green"], seed=3, steps=12)]
    with unet_batches(batching_engine) as sizes:
        results = run_together(batching_engine, requests)
    assert Counter(sizes) == {4: STEPS, 2: 12}  # the two 20-step requests together, the 12-step one alone
    assert [analyze(r.images[0].image).objects[0].colour for r in results] == ["red", "blue", "green"]


def test_a_long_prompt_gets_a_call_of_its_own(batching_engine):
    long_prompt = PROMPTS["red"] + ", " + ", ".join(["sharp edges"] * 40)  # more than 77 tokens: longer embeddings
    requests = [GenerationRequest(prompt=long_prompt, seed=5, steps=STEPS),
                GenerationRequest(prompt=PROMPTS["blue"], seed=6, steps=STEPS)]
    with unet_batches(batching_engine) as sizes:
        results = run_together(batching_engine, requests)
    assert sizes == [2] * (2 * STEPS)
    assert [analyze(r.images[0].image).objects[0].colour for r in results] == ["red", "blue"]


@pytest.mark.slow  # many 20-step runs (about 45 s on 2 loaded cores)
def test_cancelling_one_request_drops_only_its_images(batching_engine, engine):
    requests = [GenerationRequest(prompt=prompt, seed=20 + i, steps=STEPS)
                for i, prompt in enumerate([PROMPTS["red"], PROMPTS["blue"], PROMPTS["yellow"]])]
    cancels = [threading.Event() for _ in requests]
    events = [[] for _ in requests]

    def progress(index):
        def on_progress(event):
            events[index].append(event)
            if index == 1 and event.step == 5:
                cancels[1].set()
        return on_progress

    with unet_batches(batching_engine) as sizes:
        results = run_together(batching_engine, requests, on_progress=[progress(i) for i in range(3)],
                               cancel=cancels)
    assert sizes == [6] * STEPS  # the shared call went on for the others
    assert isinstance(results[1], GenerationCancelled)
    assert max(e.step for e in events[1]) == 5  # no progress for it once it cancelled
    for index, colour in ((0, "red"), (2, "yellow")):
        assert analyze(results[index].images[0].image).objects[0].colour == colour
        assert_like_alone(engine, requests[index], results[index])
        assert [e.step for e in events[index]] == list(range(1, STEPS + 1))
        # its own previews: one per image, the last one close to its own final image's colours
        last = [e for e in events[index] if e.previews][-1].previews
        assert len(last) == 1
        final = np.asarray(results[index].images[0].image, float).mean(axis=(0, 1))
        assert np.abs(np.asarray(last[0], float).mean(axis=(0, 1)) - final).max() < 40


def test_when_every_request_cancels_the_call_stops(batching_engine):
    requests = [GenerationRequest(prompt=PROMPTS["red"], seed=1, steps=STEPS),
                GenerationRequest(prompt=PROMPTS["blue"], seed=2, steps=STEPS)]
    cancels = [threading.Event() for _ in requests]

    def stop_at_step_3(index):
        def on_progress(event):
            if event.step == 3:
                cancels[index].set()
        return on_progress

    with unet_batches(batching_engine) as sizes:
        results = run_together(batching_engine, requests, on_progress=[stop_at_step_3(0), stop_at_step_3(1)],
                               cancel=cancels)
    assert all(isinstance(r, GenerationCancelled) for r in results)
    assert sizes == [4] * 4  # the step running when the second one cancelled, then no more


def test_one_request_failing_does_not_reach_the_others(batching_engine):
    def broken_progress(event):
        raise ConnectionError("client went away")

    requests = [GenerationRequest(prompt="a (red circle", seed=1, steps=STEPS),  # prompt syntax error
                GenerationRequest(prompt=PROMPTS["blue"], seed=2, steps=STEPS),
                GenerationRequest(prompt=PROMPTS["green"], seed=3, steps=STEPS),
                GenerationRequest(prompt=PROMPTS["yellow"], seed=4, steps=STEPS)]
    with unet_batches(batching_engine) as sizes:
        results = run_together(batching_engine, requests, on_progress=[None, broken_progress, None, None])
    assert isinstance(results[0], RequestError) and "syntax" in str(results[0])
    assert isinstance(results[1], ConnectionError)
    assert sizes == [6] * STEPS  # the bad prompt never entered the call; the broken client's image was dropped
    assert [analyze(r.images[0].image).objects[0].colour for r in results[2:]] == ["green", "yellow"]


@pytest.mark.slow  # trains a LoRA (about 40 s)
def test_requests_with_the_same_lora_share_a_call_and_the_lora_acts(settings, tmp_path):
    from lora_helpers import train_tint_lora

    train_tint_lora(tmp_path / "blue.safetensors", (0, 0, 255), seed=1)
    with_lora = dataclasses.replace(settings, lora_dir=tmp_path)
    batching, alone = Engine(dataclasses.replace(with_lora, batch_max=4, batch_window_ms=0)), Engine(with_lora)
    blue = {"lora": [{"name": "blue", "weight": 1.0}]}
    requests = [GenerationRequest(prompt=PROMPTS["red"], seed=1, steps=12, plugin_units=blue),
                GenerationRequest(prompt=PROMPTS["yellow"], seed=2, steps=12, plugin_units=blue),
                GenerationRequest(prompt=PROMPTS["green"], seed=3, steps=12)]
    with unet_batches(batching) as sizes:
        results = run_together(batching, requests)
    assert Counter(sizes) == {4: 12, 2: 12}  # the two LoRA requests together, the plain one on its own
    for request, result in zip(requests, results):
        assert_like_alone(alone, request, result)
    for request, result in zip(requests[:2], results):  # the LoRA acted on the shared call (test_lora: mean 4.8)
        plain = alone.generate(dataclasses.replace(request, plugin_units={})).images[0].image
        change = np.abs(np.asarray(plain, float) - np.asarray(result.images[0].image, float)).mean()
        print("mean change by the LoRA:", round(change, 1))
        assert change > 3


@pytest.mark.slow  # many 20-step runs (about 25 s on 2 loaded cores)
def test_batching_off_runs_one_request_per_call_with_unchanged_bytes(engine):
    assert engine.settings.batch_max == 1
    requests = [GenerationRequest(prompt=prompt, seed=30 + i, steps=8) for i, prompt in enumerate(PROMPTS.values())]
    sequential = [engine.run(engine.prepare(request)) for request in requests]  # the plain path, no batcher
    with unet_batches(engine) as sizes:
        results = run_together(engine, requests)
    assert sizes == [2] * (8 * len(requests))
    for alone, concurrent in zip(sequential, results):
        assert concurrent.images[0].image.tobytes() == alone.images[0].image.tobytes()


def test_which_requests_can_share_a_call(batching_engine):
    from PIL import Image

    def key(**fields):
        return batch_key(batching_engine.prepare(GenerationRequest(**{"prompt": "a red circle", **fields})))

    assert key(seed=1) == key(seed=2, prompt="a blue square", negative_prompt="green")
    assert key(steps=20) != key(steps=12)
    assert key(cfg=7.0) != key(cfg=5.0)
    assert key(sampler="Euler") != key(sampler="DDIM")
    assert key(batch_count=2) is None
    black, white = Image.new("RGB", (64, 64)), Image.new("RGB", (64, 64), "white")
    assert key(init_image=black) == key(init_image=white, seed=2) != key()  # images differ per request
    assert key(init_image=black, strength=0.5) != key(init_image=black, strength=0.7)
    assert key(init_image=black, mask=Image.new("L", (64, 64))) != key(init_image=black)
    control = {"controlnet": [{"image": black}]}
    assert key(plugin_units=control) == key(plugin_units={"controlnet": [{"image": white}]}) != key()
    assert key(plugin_units=control) != key(plugin_units={"controlnet": [{"image": black, "scale": 0.5}]})
    assert not batching_engine.batcher.accepts(batching_engine.prepare(
        GenerationRequest(prompt="a red circle", batch_size=4)))  # a full call on its own: no waiting


@pytest.mark.slow  # many 20-step runs (about 40 s on 2 loaded cores)
def test_inpainting_and_controlnet_requests_batch_with_their_own_images(batching_engine, engine):
    from PIL import Image

    from t2i.embedded.world import Scene, ShapeObject, render

    left, right = Image.new("L", (64, 64), 0), Image.new("L", (64, 64), 0)
    left.paste(255, (0, 0, 32, 64))
    right.paste(255, (32, 0, 64, 64))
    inits = [render(Scene((ShapeObject("circle", "blue", "medium", "left"),), "white")),
             render(Scene((ShapeObject("square", "green", "medium", "right"),), "black"))]
    inpaint = [GenerationRequest(prompt=PROMPTS["red"], seed=50 + i, steps=8, init_image=init, mask=mask, strength=1.0)
               for i, (init, mask) in enumerate(zip(inits, [right, left]))]
    with unet_batches(batching_engine) as sizes:
        results = run_together(batching_engine, inpaint)
    assert sizes == [4] * 8  # one call for both
    for request, result, kept in zip(inpaint, results, [slice(0, 32), slice(32, 64)]):
        before, after = np.asarray(request.init_image), np.asarray(result.images[0].image)
        assert np.array_equal(before[:, kept], after[:, kept])  # its own unmasked pixels, exactly
        assert_like_alone(engine, request, result)
    control = [GenerationRequest(prompt="a red square", seed=60 + i, steps=8,
                                 plugin_units={"controlnet": [{"image": init}]}) for i, init in enumerate(inits)]
    with unet_batches(batching_engine) as sizes:
        results = run_together(batching_engine, control)
    assert sizes == [4] * 8
    for request, result in zip(control, results):
        assert_like_alone(engine, request, result)


def test_the_generate_event_lets_a_batch_in(engine, settings):
    from t2i.studio import Studio
    from t2i.ui import build_app

    def model_work_limits(batch_max):
        studio = Studio(dataclasses.replace(settings, batch_max=batch_max), engine)
        demo = build_app(studio)
        return {fn.api_name: fn.concurrency_limit for fn in demo.fns.values() if fn.concurrency_id == "model"}

    assert model_work_limits(1)["generate"] == 1
    limits = model_work_limits(4)
    assert limits["generate"] == 4 and min(limits.values()) == 4  # the group's lowest limit is what Gradio uses


def test_sdxl_shaped_requests_batch_with_their_pooled_embeddings(batching_engine, engine, tiny_sdxl_dir):
    requests = [GenerationRequest(prompt=prompt, seed=40 + i, steps=4, model=str(tiny_sdxl_dir))
                for i, prompt in enumerate([PROMPTS["red"], PROMPTS["blue"]])]
    with unet_batches(batching_engine, str(tiny_sdxl_dir)) as sizes:
        results = run_together(batching_engine, requests, model=str(tiny_sdxl_dir))
    assert sizes == [4] * 4
    for request, result in zip(requests, results):
        assert_like_alone(engine, request, result)
