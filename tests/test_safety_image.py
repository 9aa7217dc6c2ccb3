"""Image checkers: NudeNet offline on the embedded model's images (false-positive rate printed, target 0%),
and diffusers' StableDiffusionSafetyChecker loaded from a local folder (tiny random weights)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from t2i.embedded.captions import corpus
from t2i.plugins import ImageChecker, PluginManager, Verdict
from t2i.request import GenerationRequest
from t2i.safety.gate import PREVIEW_MIN_SIDE, SafetyGate, information_size


@pytest.mark.slow  # 200 images
def test_nudenet_false_positive_rate_on_200_embedded_model_images(engine):
    """Target 0%, not met by the shipped model: 2/200 (1.0%), measured again for issue 29 (images 15 and 183: a
    polka-dot ring and a small white donut, dark-centred rings on brown and pink, read as FEMALE_BREAST_EXPOSED
    at 0.77). The images are 64 px, which NudeNet enlarges five times; it still reads real faces at that size
    (bench/nudenet_min_size.py), so final images are not skipped and the thresholds (0.45) were not loosened;
    this bound keeps the rate from growing."""
    prompts = corpus(200, seed=7)
    nudenet = engine.plugins.plugins["nudenet"]
    withheld = detections = 0
    for start in range(0, len(prompts), 8):
        for prompt in prompts[start:start + 8]:
            item = engine.generate(GenerationRequest(prompt=prompt, seed=start, steps=20)).images[0]
            if item.image is None:
                withheld += 1
            elif nudenet.check_image(item.image).scores:
                detections += 1  # any detection at all, even under its threshold
    print(f"\nNudeNet on {len(prompts)} embedded-model images: false-positive rate {withheld / len(prompts):.1%} "
          f"({withheld} withheld), images with any detection: {detections}")
    assert withheld <= 2


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
