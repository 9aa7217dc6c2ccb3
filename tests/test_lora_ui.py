"""The LoRA library panel through the real app: upload, trigger words, prompt tags and unit rows agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image
from safetensors.torch import save_file

from lora_helpers import UNET_TARGETS, random_lora_weights
from t2i.settings import EMBEDDED_MODEL_DIR

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client(app_url):
    return gradio_client.Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("upload") / "zqx_style.safetensors"
    unet = UNet2DConditionModel.from_pretrained(EMBEDDED_MODEL_DIR / "unet")
    save_file(random_lora_weights(unet, "unet", UNET_TARGETS), path, metadata={"t2i_trigger_words": '["zqx"]'})
    return path


def _generate(client, **fields) -> np.ndarray:
    # image inputs of other plugins (e.g. a ControlNet image) may have no default; leave them empty
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]["parameters"]
    empty = {p["parameter_name"]: None for p in info if not p["parameter_has_default"]}
    return _image(client.predict(**{**empty, **fields}, api_name="/generate"))


def _image(result) -> np.ndarray:
    item = result[1][0]
    return np.asarray(Image.open(item["image"] if isinstance(item, dict) else item[0]).convert("RGB"), dtype=float)


def test_upload_then_trigger_words_then_prompt_tag_equals_unit_row(client, lora_file, tmp_path):
    chosen, words, status = client.predict(gradio_client.handle_file(str(lora_file)), "", api_name="/lora_upload")
    assert chosen["value"] == "zqx_style" and "zqx_style" in str(chosen["choices"])  # the list is refreshed
    assert words == "zqx" and "zqx_style" in status
    assert client.predict("zqx_style", api_name="/lora_trigger_words") == "zqx"
    prompt = client.predict("a red ring", "zqx_style", 1.5, api_name="/lora_add_to_prompt")
    assert prompt == "a red ring <lora:zqx_style:1.5> zqx"
    plain = dict(prompt="a red ring zqx", seed=3, steps=8)
    by_tag = _generate(client, **{**plain, "prompt": prompt})
    by_row = _generate(client, **plain, lora_1_enabled=True, lora_1_name="zqx_style", lora_1_weight=1.5)
    assert np.array_equal(by_tag, by_row)
    assert np.abs(by_tag - _generate(client, **plain)).mean() > 0.5  # and the LoRA did something


def test_bad_uploads_are_refused_with_a_message(client, tmp_path):
    pickle = tmp_path / "evil.safetensors"
    torch.save({"x": torch.zeros(2)}, pickle)
    with pytest.raises(Exception, match="not a valid safetensors file"):
        client.predict(gradio_client.handle_file(str(pickle)), "", api_name="/lora_upload")
    with pytest.raises(Exception, match="unknown LoRA 'nonesuch'"):
        _generate(client, prompt="a red ring <lora:nonesuch:1>", seed=1, steps=2)
