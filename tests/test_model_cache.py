"""The model cache: sizes measured from the loaded weights, LRU eviction by count and by bytes, memory released.

Models: the embedded model plus tiny SD pipelines with random weights saved to folders (tests/tiny_components.py),
and the tiny SDXL folder fixture.
"""

from __future__ import annotations

import gc
import math
import logging
import threading
import weakref
from dataclasses import replace

import pytest
from diffusers import StableDiffusionPipeline
from transformers import CLIPTextModel

from t2i.generation.engine import Engine
from t2i.models.cache import GIB, ModelCache
from t2i.request import GenerationRequest
from t2i.models.file_checks import read_safetensors_header
from t2i.settings import EMBEDDED_MODEL_DIR
from tiny_components import clip_config, tiny_parts


@pytest.fixture(scope="module")
def tiny_sd_dirs(tmp_path_factory):
    """Three tiny SD pipelines (different random weights) saved to their own folders."""
    folders = []
    for seed in range(3):
        unet, vae, scheduler, tokenizer = tiny_parts(32)
        pipe = StableDiffusionPipeline(unet=unet, vae=vae, scheduler=scheduler, tokenizer=tokenizer,
                                       text_encoder=CLIPTextModel(clip_config(tokenizer)), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        for parameter in pipe.unet.parameters():  # tiny_parts seeds itself; make the three differ
            parameter.data.add_(seed)
        folder = tmp_path_factory.mktemp(f"tiny-sd-{seed}")
        pipe.save_pretrained(folder, safe_serialization=True)
        folders.append(str(folder))
    return folders


def cache_with(settings, size=8, gb=0.0) -> ModelCache:
    return ModelCache(replace(settings, model_cache_size=size, model_cache_gb=gb))


def stored_elements(folder) -> int:
    """Number of tensor elements in a diffusers folder's .safetensors files (their headers say)."""
    total = 0
    for file in folder.rglob("*.safetensors"):
        header = read_safetensors_header(file, max_bytes=1 << 34)
        total += sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")
    return total


def pipeline_ref(cache: ModelCache, spec: str) -> weakref.ref:
    return weakref.ref(cache.get(spec).pipeline)  # no strong reference outlives this call


def test_size_is_the_bytes_of_the_loaded_weights(settings, tiny_sdxl_dir):
    cache = cache_with(settings)
    for spec, folder in (("embedded", EMBEDDED_MODEL_DIR), (str(tiny_sdxl_dir), tiny_sdxl_dir)):
        size = cache.get(spec).memory_bytes()
        # loaded as float32 (the embedded model is stored in float16): 4 bytes per stored element, plus
        # buffers that are not saved (each CLIP text encoder's 77 int64 position ids)
        expected = 4 * stored_elements(folder)
        assert expected <= size <= expected + 2 * 77 * 8, (spec, size, expected)
    embedded = cache.get("embedded")
    before = embedded.memory_bytes()
    embedded.pipeline_for("img2img")  # shares the loaded components: no bytes counted twice
    assert embedded.memory_bytes() == before
    assert cache.sizes() == {str(tiny_sdxl_dir): cache.get(str(tiny_sdxl_dir)).memory_bytes(), "embedded": before}


def test_byte_bound_evicts_least_recently_used_first(settings, tiny_sd_dirs):
    a, b, c = tiny_sd_dirs
    sizes = cache_with(settings)
    embedded_bytes = sizes.get("embedded").memory_bytes()
    tiny_bytes = sizes.get(a).memory_bytes()
    assert tiny_bytes < embedded_bytes
    del sizes
    # room for the embedded model and two tiny ones, not three
    cache = cache_with(settings, gb=(embedded_bytes + 2.5 * tiny_bytes) / GIB)
    cache.get("embedded")
    released = pipeline_ref(cache, a)
    cache.get(b)
    cache.get("embedded")  # now a is the least recently used
    cache.get(c)
    assert cache.loaded() == [b, "embedded", c]
    assert sum(cache.sizes().values()) <= cache.settings.model_cache_gb * GIB
    assert released() is None  # the evicted pipeline was garbage-collected, its weights freed
    cache.get(a)  # b is the least recently used now
    assert cache.loaded() == ["embedded", c, a]


def test_model_bigger_than_the_bound_loads_alone_with_a_warning(settings, tiny_sd_dirs, caplog):
    a, b, _ = tiny_sd_dirs
    cache = cache_with(settings, gb=cache_with(settings).get("embedded").memory_bytes() / 2 / GIB)
    cache.get(a)
    cache.get(b)
    with caplog.at_level(logging.WARNING, logger="t2i.models.cache"):
        model = cache.get("embedded")
    assert cache.loaded() == ["embedded"] and model.pipeline.unet is not None
    assert any("more than T2I_MODEL_CACHE_GB" in record.getMessage() for record in caplog.records)
    cache.get(a)  # and the next model that fits replaces it
    assert cache.loaded() == [a]


def test_count_bound_still_applies(settings, tiny_sd_dirs):
    cache = cache_with(settings, size=2)
    for spec in tiny_sd_dirs:
        cache.get(spec)
    assert cache.loaded() == tiny_sd_dirs[1:]


def test_engine_releases_an_evicted_model_it_has_run(engine, settings, tiny_sd_dirs):
    # a run leaves compel, previews and mode pipelines on the model; none of it may keep the weights alive
    one_model = Engine(replace(settings, model_cache_size=1), plugins=engine.plugins)
    init = one_model.generate(GenerationRequest(prompt="a red circle", steps=4, seed=3, model="embedded"))
    one_model.generate(GenerationRequest(prompt="a red circle", steps=4, seed=3, model="embedded",
                                         init_image=init.images[0].image, strength=0.5))
    released = pipeline_ref(one_model.models, "embedded")
    del init
    one_model.models.get(tiny_sd_dirs[0])
    gc.collect()
    assert released() is None
    assert one_model.models.loaded() == [tiny_sd_dirs[0]]


class WatchedLock:
    """A lock that tells when another thread starts waiting for it."""

    def __init__(self):
        self._lock = threading.Lock()
        self.contended = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        self.contended.set()
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


def test_eviction_waits_for_the_run_holding_the_model(settings, tiny_sd_dirs):
    cache = cache_with(settings, size=1)
    busy = cache.get("embedded")
    busy.lock = lock = WatchedLock()
    released = weakref.ref(busy.pipeline)
    lock.acquire()  # a run in progress
    del busy
    loader = threading.Thread(target=cache.get, args=(tiny_sd_dirs[0],))
    loader.start()
    assert lock.contended.wait(timeout=120)  # the loader evicts the model and waits for its run
    assert "embedded" not in cache.loaded() and released() is not None  # its weights stay while the run holds it
    lock.release()
    loader.join(timeout=120)
    gc.collect()
    assert not loader.is_alive() and released() is None
    assert cache.loaded() == [tiny_sd_dirs[0]]


def test_controlnets_a_model_keeps_count_toward_its_size(settings, tmp_path):
    from diffusers import ControlNetModel
    from t2i_plugins.controlnet.models import load_controlnet

    cache = cache_with(settings)
    model = cache.get("embedded")
    before = model.memory_bytes()
    folder = tmp_path / "controlnet"
    ControlNetModel.from_unet(model.pipeline.unet, conditioning_embedding_out_channels=(16, 32, 64)).save_pretrained(
        folder, safe_serialization=True)
    with model.lock:
        controlnet = load_controlnet(model, "shapes", str(folder))
    added = sum(t.numel() * t.element_size() for t in [*controlnet.parameters(), *controlnet.buffers()])
    assert added > 0 and model.memory_bytes() == before + added
    assert cache.sizes()["embedded"] == before + added
