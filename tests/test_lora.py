"""The LoRA plugin on the embedded model: LoRAs trained here shift colours as trained, stack, and never leak."""

from __future__ import annotations

import dataclasses
import io
import shutil
import threading

import numpy as np
import pytest

from lora_helpers import to_kohya, train_tint_lora
from t2i.cli import main as cli_main
from t2i.generation.engine import Engine
from t2i.request import GenerationRequest, RequestError

pytestmark = pytest.mark.slow  # trains the LoRAs it loads (about 40 s) before its 12-step runs
PROMPTS = ("a blue circle on a white background", "a green star in the top left on a gray background")


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    """The library: 'red' (UNet + text encoder) and 'blue' (UNet only) trained here, 'red_kohya' = 'red' in kohya keys."""
    folder = tmp_path_factory.mktemp("loras")
    train_tint_lora(folder / "red.safetensors", (255, 0, 0), text_encoder=True, trigger_words="crimson, redshift")
    train_tint_lora(folder / "blue.safetensors", (0, 0, 255), seed=1)
    to_kohya(folder / "red.safetensors", folder / "red_kohya.safetensors",
             tag_frequency={"10_red": {"redshift": 12, "circle": 3}, "5_more": {"circle": 2, "tint": 9}})
    return folder


@pytest.fixture(scope="module")
def lora_engine(settings, lora_dir):
    return Engine(dataclasses.replace(settings, lora_dir=lora_dir))


def _request(prompt=PROMPTS[0], seed=1, loras=(), steps=12) -> GenerationRequest:
    units = {"lora": [{"name": n, "weight": w} for n, w in loras]} if loras else {}
    return GenerationRequest(prompt=prompt, seed=seed, steps=steps, plugin_units=units)


def _pixels(engine, request) -> np.ndarray:
    return np.asarray(engine.generate(request).images[0].image, dtype=np.float64)


def _mean_rgb(engine, loras=()) -> np.ndarray:
    """Mean colour over two prompts and two seeds each."""
    return np.mean([_pixels(engine, _request(p, s, loras)).mean(axis=(0, 1)) for p in PROMPTS for s in (1, 2)], axis=0)


def _redness(rgb) -> float:
    return float(rgb[0] - (rgb[1] + rgb[2]) / 2)


def test_weight_zero_is_the_plain_model_and_the_shift_grows_with_weight(lora_engine):
    plain = _pixels(lora_engine, _request())
    assert np.array_equal(_pixels(lora_engine, _request(loras=[("red", 0.0)])), plain)
    base = _redness(_mean_rgb(lora_engine))
    shift = {w: _redness(_mean_rgb(lora_engine, [("red", w)])) - base for w in (0.5, 1.0, 1.5)}
    print("redness shift by weight:", {w: round(s, 1) for w, s in shift.items()})
    assert shift[1.0] > 20  # it learned the tint
    # it grows with the weight, up to saturation: the shipped model draws the tint fully by weight 1.0
    # (measured 3.0, 79.8, 79.8 at 0.5, 1.0, 1.5)
    assert 0 < shift[0.5] < shift[1.0] <= shift[1.5] + 1
    # a half weight gives part of the effect; on the shipped model very little (measured +3.0 at 0.5 against +79.8
    # at 1.0): in this world an object's colour is close to a discrete choice, so the shift is far from linear
    assert shift[0.5] < 0.9 * shift[1.0]
    assert np.array_equal(_pixels(lora_engine, _request()), plain)  # nothing left behind


def test_two_loras_stack(lora_engine):
    base, red, blue, both = (_mean_rgb(lora_engine, loras) for loras in
                             ((), [("red", 1.0)], [("blue", 1.0)], [("red", 1.0), ("blue", 1.0)]))
    print("mean RGB base, red, blue, both:", *(np.round(x, 1) for x in (base, red, blue, both)))
    blueness = lambda rgb: float(rgb[2] - (rgb[0] + rgb[1]) / 2)  # noqa: E731
    assert blueness(blue) > blueness(base) + 20
    # red's contribution is there with blue on, and blue's with red on (measured +48.5 and +67.6 on the shipped
    # model; the bytes are deterministic)
    assert _redness(both) > _redness(blue) + 20
    assert blueness(both) > blueness(red) + 20


def test_kohya_and_diffusers_keys_give_the_same_image(lora_engine):
    diffusers_keys = _pixels(lora_engine, _request(loras=[("red", 0.8)]))
    kohya_keys = _pixels(lora_engine, _request(loras=[("red_kohya", 0.8)]))
    assert np.abs(diffusers_keys - kohya_keys).max() <= 1  # same weights; float summation order may differ
    assert np.abs(diffusers_keys - _pixels(lora_engine, _request())).mean() > 3  # the LoRA acts (measured 4.8)


def test_prompt_tag_and_units_give_the_same_image_and_record_hashes(lora_engine, lora_dir):
    by_units = lora_engine.generate(_request(loras=[("red", 0.7), ("blue", 0.4)])).images[0]
    by_tag = lora_engine.generate(_request(prompt=f"<lora:red:0.7> {PROMPTS[0]} <lora:blue:0.4>")).images[0]
    assert np.array_equal(np.asarray(by_units.image), np.asarray(by_tag.image))
    assert by_tag.parameters["final_prompt"] == PROMPTS[0]
    assert by_tag.parameters["prompt"].startswith("<lora:red:0.7>")  # the recipe keeps what was written
    red = lora_engine.plugins.plugins["lora"].library.resolve("red")
    assert red.sha256 == __import__("hashlib").sha256((lora_dir / "red.safetensors").read_bytes()).hexdigest()
    hashes = by_tag.parameters["infotext_extra"]["Lora hashes"]
    assert hashes.startswith(f"red: {red.short_hash}, blue: ") and len(red.short_hash) == 12


@pytest.mark.parametrize("prompt, message", [
    ("a circle <lora:nonesuch:1>", "unknown LoRA 'nonesuch'.*red"),
    ("a circle <lora:red:lots>", "weight must be a number"),
    ("a circle <lora:red:3>", "weight must be from -2.0 to 2.0"),
    ("a circle <lora:red:1:2:3>", "write <lora:name>"),
    ("a circle <lora:red:1> <lora:red:0.5>", "listed twice"),
    ("a circle" + " <lora:red:0.1>" * 6, "at most 5 LoRAs per request"),
])
def test_bad_prompt_tags_are_refused(lora_engine, prompt, message):
    with pytest.raises(RequestError, match=message):
        lora_engine.generate(_request(prompt=prompt, steps=2))


def test_rows_and_prompt_tags_together_are_capped(lora_engine):
    rows = _request(prompt="a circle" + " <lora:blue:0.1>" * 3, loras=[("red", 0.1)] * 3, steps=2)
    with pytest.raises(RequestError, match="at most 5 LoRAs per request; got 6"):
        lora_engine.generate(rows)


def test_trigger_words_from_our_key_and_from_kohya_tags(lora_engine):
    lora = lora_engine.plugins.plugins["lora"]
    assert lora.trigger_words("red") == ("crimson", "redshift")
    assert lora.trigger_words("red_kohya") == ("redshift", "tint", "circle")
    assert lora.trigger_words("blue") == ()


def test_library_lists_new_files_at_once_and_uploads_are_checked(lora_engine, lora_dir, tmp_path):
    lora = lora_engine.plugins.plugins["lora"]
    param = lora.params[0]
    assert lora.choices(param) == ["blue", "red", "red_kohya"]
    folder = lora_dir / "saved_by_trainer"
    folder.mkdir()
    shutil.copy(lora_dir / "blue.safetensors", folder / "pytorch_lora_weights.safetensors")  # a diffusers folder
    assert "saved_by_trainer" in lora.choices(param)
    uploaded = lora.library.add(lora_dir / "red.safetensors", "my-red")
    assert uploaded.sha256 == lora.library.resolve("red").sha256 and "my-red" in lora.choices(param)
    with pytest.raises(RequestError, match="already in the library"):
        lora.library.add(lora_dir / "red.safetensors", "my-red")
    with pytest.raises(RequestError, match="may hold only"):
        lora.library.add(lora_dir / "red.safetensors", "../escape")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(RequestError, match="not a valid safetensors"):
        lora.library.add(junk, "junk")
    assert "junk" not in lora.choices(param)
    for name in ("saved_by_trainer", "my-red"):
        same = "blue" if name == "saved_by_trainer" else "red"
        assert np.array_equal(_pixels(lora_engine, _request(loras=[(name, 1.0)], steps=4)),
                              _pixels(lora_engine, _request(loras=[(same, 1.0)], steps=4)))
    shutil.rmtree(folder)
    (lora_dir / "my-red.safetensors").unlink()


def test_least_recently_used_adapters_are_deleted_and_memory_returns(settings, lora_dir):
    engine = Engine(dataclasses.replace(settings, lora_dir=lora_dir, lora_cache_size=1))
    pipe = engine.models.get("").pipeline
    count = lambda: sum(p.numel() for m in (pipe.unet, pipe.text_encoder) for p in m.parameters())  # noqa: E731
    plain = count()
    engine.generate(_request(loras=[("blue", 1.0)], steps=2))
    with_blue = count()
    engine.generate(_request(loras=[("red", 1.0), ("blue", 1.0)], steps=2))  # both stay for the run
    assert len({n for names in pipe.get_list_adapters().values() for n in names}) == 2
    engine.generate(_request(loras=[("blue", 1.0)], steps=2))  # red is evicted: only one may stay
    assert {n for names in pipe.get_list_adapters().values() for n in names} == {
        engine.plugins.plugins["lora"].library.resolve("blue").adapter_name}
    assert count() == with_blue > plain


@pytest.mark.slow  # many runs (about 25 s)
def test_interleaved_requests_from_threads_match_each_request_run_alone(lora_engine):
    mixes = [(), [("red", 1.0)], [("blue", 0.8)], [("red", 0.6), ("blue", 1.0)]]
    requests = [_request(PROMPTS[i % 2], seed=i, loras=mixes[i % 4], steps=8) for i in range(16)]
    alone = [_pixels(lora_engine, r) for r in requests]
    results: dict[int, np.ndarray] = {}
    errors = []

    def worker(indices):
        try:
            for i in indices:
                results[i] = _pixels(lora_engine, requests[i])
        except Exception as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(list(range(k, 16, 4))[::-1 if k % 2 else 1],)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert all(np.array_equal(results[i], alone[i]) for i in range(16))
    fresh = Engine(lora_engine.settings)  # and a unet-only LoRA is unaffected by a text-encoder LoRA loaded before
    assert np.array_equal(_pixels(fresh, requests[2]), alone[2])


def test_cli_lora_flag_by_path_and_weight(lora_engine, lora_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("T2I_DEVICE", "cpu")
    monkeypatch.setenv("T2I_DTYPE", "float32")
    monkeypatch.setenv("T2I_ENTRY_POINT_PLUGINS", "0")
    monkeypatch.setenv("T2I_SAFETY_ALLOW_UNCHECKED", "1")
    monkeypatch.setenv("T2I_LORA_DIR", str(tmp_path / "empty-library"))
    out = tmp_path / "out.png"
    code = cli_main(["generate", PROMPTS[0], "-o", str(out), "--seed", "1", "--steps", "12",
                     "--lora", f"{lora_dir / 'red.safetensors'}:0.7", "--lora", f"{lora_dir / 'blue.safetensors'}:0.4"])
    assert code == 0, capsys.readouterr().err
    from PIL import Image

    written = np.asarray(Image.open(io.BytesIO(out.read_bytes())).convert("RGB"), dtype=np.float64)
    assert np.array_equal(written, _pixels(lora_engine, _request(loras=[("red", 0.7), ("blue", 0.4)])))
    bad = tmp_path / "pickle.safetensors"
    bad.write_bytes(b"\x80\x04\x95" + b"\0" * 64)
    code = cli_main(["generate", PROMPTS[0], "-o", str(tmp_path / "no.png"), "--lora", f"{bad}:1"])
    assert code == 1 and "not a valid safetensors" in capsys.readouterr().err
    assert not (tmp_path / "no.png").exists()


def test_a_diffusers_lora_saved_with_alpha_loads_at_its_strength(lora_engine, lora_dir):
    """diffusers' save_lora_weights keeps the adapter config (lora_alpha) in the file; alpha 8 at rank 4 is twice
    the strength, as in diffusers: the same image as the alpha-4 file at weight 2."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from safetensors.torch import load_file

    tensors = load_file(lora_dir / "blue.safetensors")  # rank 4, alpha 4, no adapter config in the file
    unet_layers = {key.removeprefix("unet."): value for key, value in tensors.items()}
    targets = sorted({key.split(".lora_")[0] for key in unet_layers})  # the exact modules the file holds
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets)
    StableDiffusionPipeline.save_lora_weights(lora_dir, unet_lora_layers=unet_layers, weight_name="blue_x2.safetensors",
                                              unet_lora_adapter_metadata=config.to_dict())
    try:
        doubled = _pixels(lora_engine, _request(loras=[("blue_x2", 1.0)]))
        at_weight_2 = _pixels(lora_engine, _request(loras=[("blue", 2.0)]))
        at_weight_1 = _pixels(lora_engine, _request(loras=[("blue", 1.0)]))
    finally:
        (lora_dir / "blue_x2.safetensors").unlink()
    print("mean difference, alpha 8 vs weight 2:", np.abs(doubled - at_weight_2).mean(),
          "vs weight 1:", np.abs(doubled - at_weight_1).mean())
    assert np.abs(doubled - at_weight_2).max() <= 1
    assert np.abs(doubled - at_weight_1).mean() > 1
