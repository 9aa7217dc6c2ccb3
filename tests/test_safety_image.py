"""Image checkers: NudeNet offline on the embedded model's images (false-positive rate printed, target 0%, met),
and diffusers' StableDiffusionSafetyChecker loaded from a local folder (tiny random weights)."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t2i.embedded.captions import corpus
from t2i.eval.analyzer import analyze
from t2i.generation.engine import Engine
from t2i.plugins import ImageChecker, PluginManager, Verdict
from t2i.request import GenerationRequest
from t2i.safety.gate import PREVIEW_MIN_SIDE, SafetyGate, information_size


@pytest.mark.slow  # 200 images, generated eight to a pipeline call
def test_nudenet_false_positive_rate_on_200_embedded_model_images(settings, engine, tmp_path):
    """Target 0%, met since the checker shows NudeNet a small image enlarged twice on a letterbox instead of five
    times (plugins/safety_image/nudenet_checker.py): before, 2/200 were withheld (images 15 and 183, a dark-centred
    ring on brown or pink read as FEMALE_BREAST_EXPOSED at 0.77), with the same thresholds.

    Cheaper than 200 lone 20-step requests (about 147 s), and still the real model and the real detector on every
    image: the engine's own batching (T2I_BATCH_MAX=8) runs eight of the corpus's prompts in one pipeline call
    (2.3x the throughput, measured on 32 images), at 10 steps, where the images are the 20-step ones as the
    analyzer measures them (on 25 of these prompts and seeds: 25/25 backgrounds, 24/25 largest objects of the same
    colour and shape). test_the_checker_shows_nudenet_small_images_at_a_scale_it_reads keeps the two former false
    positives at 20 steps."""
    batched = Engine(dataclasses.replace(settings, batch_max=8, batch_window_ms=60_000, data_dir=tmp_path),
                     plugins=engine.plugins)
    # the first 200 captions the default prompt checker passes (corpus(200, seed=7) when it refuses none): a refused
    # world prompt is the prompt tests' business (test_safety_prompt), and must not stop this image measurement
    prompt_checker = engine.plugins.plugins["prompt_moderation"]
    prompts = [prompt for prompt in corpus(240, seed=7) if not prompt_checker.check_prompt(prompt).flagged][:200]
    assert len(prompts) == 200
    nudenet = engine.plugins.plugins["nudenet"]
    withheld, detections, backgrounds = [], 0, set()
    with ThreadPoolExecutor(8) as pool:
        for start in range(0, len(prompts), 8):  # eight requests arrive together: one full group
            results = pool.map(lambda prompt: batched.generate(GenerationRequest(prompt=prompt, seed=start, steps=10)),
                               prompts[start:start + 8])
            for index, item in enumerate((result.images[0] for result in results), start):
                if item.image is None:
                    withheld.append(index)
                    continue
                detections += bool(nudenet.check_image(item.image).scores)  # any detection, even under threshold
                backgrounds.add(analyze(item.image).background)
    print(f"\nNudeNet on {len(prompts)} embedded-model images: false-positive rate {len(withheld) / len(prompts):.1%} "
          f"(withheld: {withheld}), images with any detection: {detections}")
    assert len(backgrounds) >= 6  # the shapes world's images, not a degenerate output
    assert withheld == []


class FlagEveryImage(ImageChecker):
    name = "flag_every_image"

    def check_image(self, image):
        return Verdict(True, "test: flags everything")


def test_a_preview_with_too_little_information_is_not_screened_but_the_final_image_always_is(settings):
    gate = SafetyGate(PluginManager([FlagEveryImage()]), settings)
    cells = Image.fromarray(np.random.default_rng(2).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    blocky = cells.resize((64, 64), Image.Resampling.NEAREST)  # an approximate preview: 16x16 latents shown at 4x
    assert information_size(blocky) == (16, 16) and information_size(cells.resize((64, 64))) == (64, 64)
    # NudeNet reads nothing at 16 px (bench/nudenet_min_size.py)
    assert not gate.screen_image(blocky, "preview").flagged
    assert gate.screen_image(blocky, "image").flagged  # a final image is screened at any size
    assert gate.screen_image(cells.resize((64, 64)), "preview").flagged  # 64 px of information: screened
    enough = cells.resize((PREVIEW_MIN_SIDE,) * 2).resize((PREVIEW_MIN_SIDE * 2,) * 2, Image.Resampling.NEAREST)
    assert information_size(enough) == (PREVIEW_MIN_SIDE,) * 2 and gate.screen_image(enough, "preview").flagged


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_nudenet_reads_every_image_mode_and_reports_scores_per_class(engine, mode):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 80, 3), dtype=np.uint8)).convert(mode)
    verdict = engine.plugins.plugins["nudenet"].check_image(image)
    assert not verdict.flagged and all(0 < score <= 1 for score in verdict.scores.values())


def _tiny_safety_checker(folder, concept_threshold: float):
    """A StableDiffusionSafetyChecker with tiny random CLIP weights, saved like the real one (model + processor)."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    config = CLIPConfig(projection_dim=16,
                        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
                        text_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                                     "num_attention_heads": 4, "vocab_size": 99})
    model = StableDiffusionSafetyChecker(config)
    with torch.no_grad():  # the concept thresholds are weights; cosine similarity never exceeds 1
        model.concept_embeds_weights.fill_(concept_threshold)
    model.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


@pytest.mark.parametrize("threshold, flagged", [(1.0, False), (-1.0, True)])
def test_the_sd_safety_checker_loads_from_a_local_folder(settings, tmp_path, threshold, flagged):
    _tiny_safety_checker(tmp_path, threshold)
    plugins = PluginManager.discover(dataclasses.replace(settings, safety_sd_checker=str(tmp_path)))
    verdict = plugins.plugins["sd_safety_checker"].check_image(Image.new("RGB", (64, 64), (10, 200, 30)))
    assert verdict.flagged is flagged and verdict.scores == {"nsfw_concept": float(flagged)}


def test_without_its_weights_the_sd_safety_checker_is_skipped_with_a_note(settings, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        plugins = PluginManager.discover(dataclasses.replace(settings, safety_sd_checker=str(tmp_path / "none")))
    assert "sd_safety_checker" not in plugins.plugins and "nudenet" in plugins.plugins
    assert "Stable Diffusion safety checker skipped" in caplog.text


@pytest.mark.slow  # two 20-step generations
def test_the_checker_shows_nudenet_small_images_at_a_scale_it_reads(engine):
    """The cause of the embedded model's two false positives: NudeNet's own fit enlarges a 64 px image five times,
    where rings on brown or pink read as exposed breasts. Enlarged twice on a letterbox, they read as nothing,
    while a photo of a face shrunk to 64 px reads better than before (bench/nudenet_min_size.py)."""
    nudenet = engine.plugins.plugins["nudenet"]
    prompts = corpus(200, seed=7)

    def own_fit(image):
        return {found["class"]: found["score"] for found in nudenet.detector.detect(np.asarray(image.convert("RGBA")))}

    for index in (15, 183):
        image = engine.generate(GenerationRequest(prompt=prompts[index], seed=index - index % 8, steps=20)).images[0].image
        assert own_fit(image).get("FEMALE_BREAST_EXPOSED", 0) > 0.7  # what withheld it before
        assert nudenet.check_image(image).scores == {}
    photo = Image.open(Path(importlib.util.find_spec("matplotlib").submodule_search_locations[0])
                       / "mpl-data" / "sample_data" / "grace_hopper.jpg").convert("RGB")
    photo.thumbnail((64, 64), Image.Resampling.LANCZOS)
    assert nudenet.check_image(photo).scores.get("FACE_FEMALE", 0) > own_fit(photo).get("FACE_FEMALE", 0) + 0.2
