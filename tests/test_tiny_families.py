"""Tiny random models of every family (t2i/models/tiny): built offline, saved, reloaded, run; same seed, same bytes.

The fast lane runs one UNet family and one transformer family end to end; the slow lane runs all of them,
their single files and their LoRAs in both key styles.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from t2i.models.tiny import (
    FAMILIES, SINGLE_FILE_FAMILIES, build_pipeline, save_single_file, save_tiny_lora, save_tiny_model,
)
from t2i.models.tiny.tokenizers import WORDS, clip_tokenizer, mistral_tokenizer, qwen_tokenizer, t5_tokenizer

VARIANTS = [(family, variant) for family, (_, _, variants) in FAMILIES.items() for variant in variants]
FAST = {("sd", ""), ("flux1", "dev")}
QWEN_IMAGE_PREFIX = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, "
                     "text, spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n")


def _lanes(pairs):
    return [pytest.param(*pair, marks=() if pair in FAST else pytest.mark.slow) for pair in pairs]


def _folder_digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _generate(pipe, prompt="a red circle", seed=0) -> np.ndarray:
    return pipe(prompt=prompt, num_inference_steps=2, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(seed)).images


@pytest.mark.parametrize(("family", "variant"), _lanes(VARIANTS))
def test_family_saves_reloads_offline_and_runs_deterministically(family, variant, tmp_path):
    first = save_tiny_model(family, tmp_path / "a", variant)
    again = save_tiny_model(family, tmp_path / "b", variant)
    assert _folder_digest(first) == _folder_digest(again)  # same seed: identical weights and tokenizer files
    assert not list(first.rglob("*.bin")) and list(first.rglob("*.safetensors"))

    pipe = DiffusionPipeline.from_pretrained(first)  # offline: HF_HUB_OFFLINE=1 in CI
    assert type(pipe).__name__ == FAMILIES[family][0]
    image = _generate(pipe)
    assert image.shape == (1, 64, 64, 3)
    assert np.array_equal(image, _generate(build_pipeline(family, variant)))  # reloaded = built, to the bit
    assert not np.array_equal(image, _generate(pipe, prompt="a blue square"))  # the prompt reaches the model


def test_another_seed_gives_other_weights():
    one, other = build_pipeline("flux1", seed=0).transformer, build_pipeline("flux1", seed=1).transformer
    assert not torch.equal(one.x_embedder.weight, other.x_embedder.weight)


def test_unknown_family_and_variant_are_refused():
    with pytest.raises(ValueError, match="unknown family 'sd4'.*flux1"):
        build_pipeline("sd4")
    with pytest.raises(ValueError, match="'dev', 'schnell'"):
        build_pipeline("flux1", "pro")


def test_tokenizers_are_reproducible_and_round_trip(tmp_path):
    for build in (clip_tokenizer, t5_tokenizer, qwen_tokenizer, mistral_tokenizer):
        build().save_pretrained(tmp_path / "a" / build.__name__)
        build().save_pretrained(tmp_path / "b" / build.__name__)
        assert _folder_digest(tmp_path / "a" / build.__name__) == _folder_digest(tmp_path / "b" / build.__name__)
    prompt = "a red circle and a blue square, photo"
    clip, t5, qwen = clip_tokenizer(), t5_tokenizer(), qwen_tokenizer()
    # every word of the list is one token; a word outside it still tokenizes (into pieces), nothing is lost
    assert len(clip(prompt, add_special_tokens=False).input_ids) == 9
    assert t5.decode(t5(prompt).input_ids, skip_special_tokens=True) == prompt
    assert qwen.decode(qwen(prompt + " zebra").input_ids) == prompt + " zebra"
    assert all(len(qwen.tokenize(" " + word)) == 1 for word in WORDS)
    # Qwen-Image drops the first 34 tokens of its template: with this tokenizer they are exactly its prefix
    assert len(qwen(QWEN_IMAGE_PREFIX).input_ids) == 34
    chat = qwen.apply_chat_template([{"role": "user", "content": "a cat"}], tokenize=False,
                                    add_generation_prompt=True, enable_thinking=True)
    assert chat == "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.slow
@pytest.mark.parametrize("family", SINGLE_FILE_FAMILIES)
def test_single_file_in_original_layout_loads_through_diffusers(family, tmp_path):
    folder = save_tiny_model(family, tmp_path / "folder")
    path = save_single_file(family, tmp_path / "model.safetensors")
    assert path.read_bytes() == save_single_file(family, tmp_path / "again.safetensors").read_bytes()
    reference = DiffusionPipeline.from_pretrained(folder).transformer
    loaded = type(reference).from_single_file(str(path), config=str(folder), subfolder="transformer")
    assert reference.state_dict().keys() == loaded.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in reference.state_dict().items())


def test_single_file_refused_where_diffusers_cannot_read_a_tiny_one(tmp_path):
    with pytest.raises(ValueError, match="no tiny single file for 'flux1'"):
        save_single_file("flux1", tmp_path / "flux.safetensors")


LORA_CASES = [(family, style) for family in FAMILIES for style in ("diffusers", "kohya")
              if (family, style) != ("sd3", "kohya")]


@pytest.mark.parametrize(("family", "style"), [
    pytest.param(*case, marks=() if case in {("flux1", "kohya"), ("sdxl", "kohya")} else pytest.mark.slow)
    for case in LORA_CASES])
def test_lora_changes_the_image_at_weight_1_and_not_at_0(family, style, tmp_path):
    path = save_tiny_lora(family, tmp_path / "lora.safetensors", style)
    assert path.read_bytes() == save_tiny_lora(family, tmp_path / "again.safetensors", style).read_bytes()
    pipe = build_pipeline(family)
    plain = _generate(pipe)
    pipe.load_lora_weights(str(path), adapter_name="tiny")
    pipe.set_adapters(["tiny"], [1.0])
    assert np.abs(_generate(pipe) - plain).max() > 1e-3
    pipe.set_adapters(["tiny"], [0.0])
    assert np.array_equal(_generate(pipe), plain)


def test_kohya_lora_for_sd3_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no kohya-style LoRA for SD3"):
        save_tiny_lora("sd3", tmp_path / "lora.safetensors", "kohya")
