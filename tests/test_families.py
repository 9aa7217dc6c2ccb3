"""Every model family through the engine, on tiny random models built offline (t2i/models/tiny): txt2img, img2img
and inpainting where the family has them, same request and seed -> same bytes, LoRAs in kohya and diffusers keys,
previews, recipes that replay, single files, and clear errors for what a family cannot do.

Tiny random weights make no meaningful pictures, so the checks are exact ones: identical bytes, pixels outside an
inpainting mask kept, a preview decoded as the pipeline decodes, a LoRA that changes the image at weight 1 and
leaves it byte-identical at weight 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t2i.generation.engine import Engine
from t2i.generation.previews import latents_to_preview
from t2i.models.cache import ModelCache
from t2i.models.families import FAMILIES, family_of_class, family_of_tensors
from t2i.models.file_checks import read_safetensors_header
from t2i.models.tiny import save_tiny_model
from t2i.models.tiny.files import save_gguf, save_single_file
from t2i.models.tiny.lora import save_tiny_lora
from t2i.recipes.infotext import infotext, png_bytes
from t2i.recipes.pnginfo import parse_infotext, read_png
from t2i.request import GenerationRequest, RequestError
from t2i.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# family id, or id-variant for Flux.1's two
MODELS = ("sd", "sdxl", "sd3", "flux1-dev", "flux1-schnell", "flux2", "zimage", "qwenimage", "chroma")
SIZE = 64
PROMPT = "a red circle on a white background"


def _family(key: str) -> str:
    return key.partition("-")[0]


@pytest.fixture(scope="session")
def family_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny diffusers folder of each family (and Flux.1 variant), built once."""
    root = tmp_path_factory.mktemp("families")
    return {key: save_tiny_model(_family(key), root / key, variant=key.partition("-")[2]) for key in MODELS}


@pytest.fixture(scope="session")
def family_loras(tmp_path_factory) -> Path:
    """The LoRA library: `<model>-diffusers` for every family, `<model>-kohya` where diffusers reads kohya keys."""
    folder = tmp_path_factory.mktemp("family-loras")
    for key in MODELS:
        for style in FAMILIES[_family(key)].lora_formats:
            save_tiny_lora(_family(key), folder / f"{key}-{style}.safetensors", style=style, seed=7)
    return folder


@pytest.fixture(scope="session")
def family_engine(tmp_path_factory, family_loras) -> Engine:
    """An engine that keeps every tiny model loaded, with the LoRA library above."""
    return Engine(Settings(data_dir=tmp_path_factory.mktemp("family-data"), device="cpu", dtype="float32",
                           default_model="embedded", entry_point_plugins=False, safety_allow_unchecked_images=True,
                           model_cache_size=len(MODELS) + 2, lora_dir=family_loras))


def _generate(engine, model: Path, **fields):
    fields = {"prompt": PROMPT, "steps": 2, "seed": 1, "width": SIZE, "height": SIZE,
              **fields}
    return engine.generate(GenerationRequest(model=str(model), **fields)).images[0]


def _bytes(item) -> bytes:
    return png_bytes(item.image, item.parameters)


def _init_and_mask() -> tuple[Image.Image, Image.Image]:
    init = Image.new("RGB", (SIZE, SIZE), (30, 160, 60))
    init.paste((220, 40, 40), (8, 8, 40, 40))
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    return init, mask


# ---- the registry ---------------------------------------------------------------------------------------------

def test_an_unknown_pipeline_is_refused_naming_it_and_the_supported_families(family_engine, tmp_path):
    with pytest.raises(RequestError, match=r"KandinskyV22Pipeline.*supported families: .*SDXL.*Flux\.1.*Qwen-Image"):
        family_of_class("KandinskyV22Pipeline", "kandinsky")
    folder = tmp_path / "kandinsky"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyV22Pipeline"}))
    with pytest.raises(RequestError, match="KandinskyV22Pipeline pipeline, which t2i does not run"):
        family_engine.generate(GenerationRequest(prompt="a cat", model=str(folder)))
    assert str(folder) not in family_engine.models.loaded()


def test_single_files_are_told_by_their_tensor_names(tmp_path):
    for family in ("sd3", "flux2", "zimage", "qwenimage"):
        path = save_single_file(family, tmp_path / f"{family}.safetensors")
        names = [name for name in read_safetensors_header(path, 1 << 30) if name != "__metadata__"]
        assert family_of_tensors(names, path.name).id == family
    with pytest.raises(RequestError, match="cannot tell which model family"):
        family_of_tensors(["encoder.weight", "decoder.bias"], "mystery.safetensors")


# ---- every family through the engine --------------------------------------------------------------------------

@pytest.mark.parametrize("key", MODELS)
def test_txt2img_same_request_same_bytes(family_engine, family_models, key):
    first = _generate(family_engine, family_models[key])
    second = _generate(family_engine, family_models[key])
    assert first.image.size == (SIZE, SIZE)
    assert _bytes(first) == _bytes(second)
    assert first.parameters["family"] == _family(key)
    assert _bytes(first) != _bytes(_generate(family_engine, family_models[key], seed=2))


@pytest.mark.slow
@pytest.mark.parametrize("key", MODELS)
def test_img2img_and_inpaint_where_the_family_has_them(family_engine, family_models, key):
    family = FAMILIES[_family(key)]
    init, mask = _init_and_mask()
    for mode, fields in (("img2img", {"init_image": init}), ("inpaint", {"init_image": init, "mask": mask})):
        if mode not in family.pipelines:
            with pytest.raises(RequestError, match=f"no {mode} pipeline"):
                _generate(family_engine, family_models[key], **fields)
            continue
        first = _generate(family_engine, family_models[key], strength=0.6, **fields)
        assert first.parameters["mode"] == mode
        assert _bytes(first) == _bytes(_generate(family_engine, family_models[key], strength=0.6, **fields))
        pixels, before = np.asarray(first.image), np.asarray(init)
        if mode == "inpaint":  # unmasked pixels are the init image's, exactly; the masked square was repainted
            keep = np.asarray(mask) == 0
            assert np.array_equal(pixels[keep], before[keep])
            assert not np.array_equal(pixels[~keep], before[~keep])
        else:
            assert not np.array_equal(pixels, before)


@pytest.mark.slow
@pytest.mark.parametrize("key", MODELS)
def test_a_preview_decodes_as_the_pipeline_decodes(family_engine, family_models, key):
    """The full preview of the final latents is the pipeline's own image: unpacking and un-normalising are right."""
    model = family_engine.models.get(str(family_models[key]))
    pipe = model.pipeline

    def run(output_type):
        arguments = {"prompt": "a red circle", "num_inference_steps": 2, "width": SIZE, "height": SIZE,
                     "generator": torch.Generator("cpu").manual_seed(3), "output_type": output_type}
        return pipe(**arguments).images

    with torch.inference_mode():
        latents, image = run("latent"), run("pil")[0]
        full = latents_to_preview(model, latents, "full", SIZE, SIZE)[0]
        approx = latents_to_preview(model, latents, "approx", SIZE, SIZE)[0]
    difference = np.abs(np.asarray(full, dtype=int) - np.asarray(image, dtype=int))
    assert difference.max() <= 1
    assert approx.size == (SIZE // pipe.vae_scale_factor * 4,) * 2


@pytest.mark.slow
@pytest.mark.parametrize("key", ["flux1-dev", "sd3", "qwenimage", "chroma", "flux2"])
def test_every_sampler_of_a_flow_family_runs_and_differs(family_engine, family_models, key):
    images = {name: _bytes(_generate(family_engine, family_models[key], sampler=name, steps=3))
              for name in FAMILIES[_family(key)].samplers}
    assert len(set(images.values())) == len(images)


# ---- LoRA -----------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("key", [key for key in MODELS if key != "flux1-schnell"])  # schnell: dev's architecture
def test_a_lora_changes_the_image_at_weight_1_and_not_at_0(family_engine, family_models, key):
    plain = _generate(family_engine, family_models[key]).image.tobytes()

    def with_lora(name, weight):
        item = _generate(family_engine, family_models[key], prompt=f"{PROMPT} <lora:{name}:{weight}>")
        assert f"<lora:{name}:{float(weight)}>" in infotext(item.parameters)
        return item.image.tobytes()

    for style in FAMILIES[_family(key)].lora_formats:  # diffusers keys, and kohya keys where diffusers reads them
        assert with_lora(f"{key}-{style}", 0) == plain
        assert with_lora(f"{key}-{style}", 1) != plain
    assert _generate(family_engine, family_models[key]).image.tobytes() == plain  # nothing stays switched on


@pytest.mark.slow
@pytest.mark.parametrize("model_key, lora", [("sdxl", "flux1-dev-kohya"), ("sdxl", "flux1-dev-diffusers"),
                                             ("flux1-dev", "sdxl-kohya")])
def test_a_lora_of_another_family_is_refused_with_the_model_unchanged(family_engine, family_models, model_key, lora):
    plain = _bytes(_generate(family_engine, family_models[model_key]))
    model = family_engine.models.get(str(family_models[model_key]))
    resident = model.pipeline.get_list_adapters()
    with pytest.raises(RequestError, match="LoRA"):
        _generate(family_engine, family_models[model_key], prompt=f"{PROMPT} <lora:{lora}:1>")
    assert model.pipeline.get_list_adapters() == resident  # nothing was injected
    assert _bytes(_generate(family_engine, family_models[model_key])) == plain


# ---- recipes --------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("key", MODELS)
def test_the_infotext_reads_back_and_replays_to_the_same_bytes(family_engine, family_models, key):
    item = _generate(family_engine, family_models[key], cfg=2.0)
    text = infotext(item.parameters)
    distilled = FAMILIES[_family(key)].distilled_cfg is not None and key != "flux1-schnell"
    assert ("Distilled CFG Scale: 3.5" in text) == distilled
    form = parse_infotext(text).form
    form.pop("model")  # the infotext names the folder; the test replays on the same one
    replay = family_engine.generate(GenerationRequest(**form, model=str(family_models[key]))).images[0]
    assert replay.image.tobytes() == item.image.tobytes()
    assert read_png(_bytes(item)).form["seed"] == 1


def test_forge_flux_infotext_reads_distilled_guidance_into_the_form():
    text = ("a cat\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, "
            "Seed: 7, Size: 896x1152, Model hash: 0123456789, Model: flux1-dev-bnb-nf4-v2, Version: f2.0.1")
    form = parse_infotext(text).form
    assert (form["distilled_cfg"], form["cfg"], form["sampler"], form["steps"]) == (3.5, 1.0, "Euler", 20)


# ---- bad input: clear errors, and the engine keeps serving ----------------------------------------------------

@pytest.mark.slow
def test_what_a_family_cannot_do_is_a_clear_error_and_the_engine_keeps_serving(family_engine, family_models, tmp_path):
    flux, sd3, zimage = family_models["flux1-dev"], family_models["sd3"], family_models["zimage"]
    cases = [
        ({"model": flux, "sampler": "DPM++ 2M"}, r"DPM\+\+ 2M sampler cannot run Flux\.1.*Euler, UniPC"),
        ({"model": sd3, "prompt": "a (red:1.4) circle"}, "SD3/3.5 models do not support prompt weighting"),
        ({"model": zimage, "prompt": " ".join(["red"] * 600)}, r"\d+ tokens long; Z-Image models read at most 448"),
        ({"model": family_models["flux2"], "negative_prompt": "blurry"}, "Flux.2 models take no negative prompt"),
        ({"model": sd3, "distilled_cfg": 5.0}, "has no distilled guidance"),
        ({"model": family_models["flux1-schnell"], "distilled_cfg": 5.0}, "has no distilled guidance"),
    ]
    control = {"controlnet": [{"image": Image.new("RGB", (SIZE, SIZE), "white"), "preprocessor": "none"}]}
    cases += [({"model": flux, "plugin_units": control},
               r"'embedded-edges' is a .*\(ControlNetModel\) and model .* is Flux\.1 .*FluxControlNetModel"),
              ({"model": family_models["chroma"], "plugin_units": control}, "diffusers has no ControlNet for Chroma")]
    for fields, message in cases:
        with pytest.raises(RequestError, match=message):
            _generate(family_engine, **fields)
    unknown = tmp_path / "mystery.safetensors"
    from safetensors.torch import save_file
    save_file({"encoder.weight": torch.zeros(2, 2)}, str(unknown))
    with pytest.raises(RequestError, match="cannot tell which model family"):
        _generate(family_engine, unknown)
    assert _generate(family_engine, flux).image.size == (SIZE, SIZE)  # still serving


@pytest.mark.slow
def test_flux_prompts_take_a1111_weighting_through_compel(family_engine, family_models):
    model = family_engine.models.get(str(family_models["flux1-dev"]))
    from t2i.generation.prompts import encode_prompts

    def embeds(prompt):
        return encode_prompts(model, prompt, "")["prompt_embeds"]

    assert torch.allclose(embeds("a (red:1.5) circle"), embeds("a (red)1.5 circle"))
    assert not torch.allclose(embeds("a (red:1.5) circle"), embeds("a red circle"))
    weighted = _generate(family_engine, family_models["flux1-dev"], prompt="a (red:1.5) circle").image
    plain = _generate(family_engine, family_models["flux1-dev"], prompt="a red circle").image
    assert weighted.tobytes() != plain.tobytes()


@pytest.mark.slow
def test_a_flux_prompt_over_the_t5_limit_is_refused_not_cut(family_engine, family_models):
    with pytest.raises(RequestError, match="tokens long; Flux.1 .* read at most"):
        _generate(family_engine, family_models["flux1-dev"], prompt=" ".join(["red"] * 600))


# ---- single files and the command line ------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd3", "zimage", "qwenimage", "flux2"])
def test_a_single_file_denoiser_loads_with_configs_from_a_local_folder(family_models, tmp_path, family):
    path = save_single_file(family, tmp_path / f"{family}.safetensors")  # the same seed: the folder's weights
    settings = Settings(data_dir=tmp_path / "data", device="cpu", dtype="float32", default_model="embedded",
                        entry_point_plugins=False, single_file_config=str(family_models[family]))
    cache = ModelCache(settings)
    single, folder = cache.get(str(path)), cache.get(str(family_models[family]))
    assert single.family == family and single.name == path.name
    expected = folder.denoiser.state_dict()
    loaded = single.denoiser.state_dict()
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[name], expected[name]) for name in loaded)
    with pytest.raises(RequestError, match="T2I_SINGLE_FILE_CONFIG"):
        ModelCache(Settings(data_dir=tmp_path / "bare", device="cpu", entry_point_plugins=False)).get(str(path))


@pytest.mark.slow
def test_the_cli_generates_with_a_new_family(family_models, tmp_path):
    out = tmp_path / "flux.png"
    env = {**os.environ, "T2I_DATA_DIR": str(tmp_path / "data"), "T2I_DEVICE": "cpu", "T2I_ENTRY_POINT_PLUGINS": "0",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "t2i", "generate", "a red circle", "--model",
                           str(family_models["flux1-dev"]), "--steps", "2", "--width", "64", "--height", "64",
                           "--seed", "4", "--distilled-cfg", "2.5", "-o", str(out)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    parameters = Image.open(out).info["parameters"]
    assert "CFG scale: 5.0, Distilled CFG Scale: 2.5, Seed: 4, Size: 64x64" in parameters


@pytest.mark.slow
@pytest.mark.parametrize("family", ["flux1", "qwenimage"])
def test_a_gguf_denoiser_runs_quantised_with_fewer_resident_bytes(family_engine, family_models, tmp_path, family):
    key = "flux1-dev" if family == "flux1" else family
    path = save_gguf(family, tmp_path / f"{family}-Q8_0.gguf", "Q8_0")  # the folder's weights, quantised
    engine = Engine(Settings(data_dir=tmp_path / "data", device="cpu", dtype="float32", default_model="embedded",
                             entry_point_plugins=False, safety_allow_unchecked_images=True,
                             single_file_config=str(family_models[key]), model_cache_size=2))
    quantised = np.asarray(_generate(engine, path).image, dtype=int)
    plain = np.asarray(_generate(engine, family_models[key]).image, dtype=int)
    assert np.abs(quantised - plain).mean() < 2  # Q8_0 stays close to the float32 weights
    sizes = engine.models.sizes()
    assert sizes[str(path)] < sizes[str(family_models[key])]
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(path.read_bytes()[:200])
    with pytest.raises(RequestError, match="corrupt.gguf"):
        _generate(engine, corrupt)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["flux1-dev", "qwenimage"])  # compel embeddings; texts for the pipeline's encoder
def test_batched_requests_share_one_transformer_call(family_models, tmp_path, key):
    import threading

    engine = Engine(Settings(data_dir=tmp_path / "data", device="cpu", dtype="float32", default_model="embedded",
                             entry_point_plugins=False, safety_allow_unchecked_images=True, batch_max=2,
                             batch_window_ms=60_000))  # the second request, not the window, closes the batch
    requests = [GenerationRequest(prompt=prompt, model=str(family_models[key]), seed=seed, steps=2, width=SIZE,
                                  height=SIZE) for prompt, seed in (("a red circle", 5), ("a blue square", 6))]
    batches = []
    model = engine.models.get(str(family_models[key]))
    hook = model.denoiser.register_forward_hook(lambda module, args, kwargs, out: batches.append(
        kwargs["hidden_states"].shape[0]), with_kwargs=True)
    results = [None, None]

    def run(index):
        results[index] = engine.generate(requests[index])

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hook.remove()
    assert batches and set(batches) == {2}  # every denoiser call carried both requests
    for request, result in zip(requests, results):
        item = result.images[0]
        assert (item.seed, item.parameters["prompt"]) == (request.seed, request.prompt)
        alone = np.asarray(engine.run(engine.prepare(request)).images[0].image, dtype=int)
        assert np.abs(np.asarray(item.image, dtype=int) - alone).max() <= 8  # its own prompt and seed


@pytest.mark.slow
def test_a_lora_of_another_family_is_refused_before_its_values_are_scanned(family_engine, family_models, tmp_path):
    """The fit check reads names and shapes only; the slow NaN/Inf scan comes after it (a real-size Flux LoRA on
    SDXL is refused in well under 2 s)."""
    from safetensors.torch import load_file, save_file

    from t2i_plugins.lora.files import check_lora_file

    tensors = load_file(save_tiny_lora("flux1", tmp_path / "flux.safetensors", style="kohya"))
    tensors[next(name for name in tensors if name.endswith("lora_down.weight"))][0, 0] = float("nan")
    save_file(tensors, str(tmp_path / "flux-nan.safetensors"))
    sdxl = family_engine.models.get(str(family_models["sdxl"])).pipeline
    with pytest.raises(RequestError, match="does not fit this model"):
        check_lora_file(sdxl, tmp_path / "flux-nan.safetensors", "flux-nan", 1 << 30)
    flux = family_engine.models.get(str(family_models["flux1-dev"])).pipeline
    with pytest.raises(RequestError, match="NaN or infinite"):
        check_lora_file(flux, tmp_path / "flux-nan.safetensors", "flux-nan", 1 << 30)
