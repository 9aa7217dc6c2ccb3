"""The LoRA library panel through the real app: upload, trigger words, prompt tags and unit rows agree; uploads are
checked against the chosen model and can be deleted by the page that uploaded them; the lists are filled on load."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image
from safetensors.torch import save_file

from lora_helpers import UNET_TARGETS, random_lora_weights
from t2i.settings import EMBEDDED_MODEL_DIR

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.slow  # the real app


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


def test_an_upload_for_another_model_is_refused_at_upload_and_not_listed(app_url, tiny_sdxl_dir, tmp_path):
    client = gradio_client.Client(app_url, verbose=False)
    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl_dir / "unet")
    path = tmp_path / "for_xl.safetensors"
    save_file(random_lora_weights(unet, "unet", UNET_TARGETS), path)
    with pytest.raises(Exception, match="LoRA 'for_xl' does not fit this model"):
        client.predict(gradio_client.handle_file(str(path)), "", "embedded", api_name="/lora_upload")
    assert "for_xl" not in str(client.predict(None, api_name="/lora_refresh"))


def test_only_the_uploading_session_can_delete_an_upload(app_url, lora_file):
    owner, other = (gradio_client.Client(app_url, verbose=False) for _ in range(2))
    owner.predict(gradio_client.handle_file(str(lora_file)), "to_delete", api_name="/lora_upload")
    with pytest.raises(Exception, match="only a LoRA uploaded from this page can be deleted"):
        other.predict("to_delete", api_name="/lora_delete")
    with pytest.raises(Exception, match="only a LoRA uploaded from this page can be deleted"):
        owner.predict("zqx_style", api_name="/lora_delete")  # not an upload of this session
    chosen, _, status = owner.predict("to_delete", api_name="/lora_delete")
    assert "to_delete" not in str(chosen["choices"]) and "Deleted" in status
    assert "to_delete" not in str(other.predict(None, api_name="/lora_refresh"))


def test_the_page_lists_loras_added_after_start_and_add_to_prompt_explains_itself(app_url, lora_file, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed")
    gradio_client.Client(app_url, verbose=False).predict(gradio_client.handle_file(str(lora_file)), "after_start",
                                                         api_name="/lora_upload")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium,
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(app_url)
        page.locator("#generate").wait_for()
        for accordion in ("#lora-library", "#plugin-lora"):
            page.locator(f"{accordion} button.label-wrap").first.click()
            page.locator(f"{accordion} button.label-wrap.open").first.wait_for()  # opened, not still loading
        for dropdown in ("#lora_chosen", "#lora_1_name"):  # filled on load, no "Refresh" pressed
            page.locator(f"{dropdown} input").click()
            page.locator(dropdown).get_by_role("option", name="after_start").wait_for(timeout=30_000)
            page.keyboard.press("Escape")
        page.locator("#lora_insert").click()
        page.locator(".toast-body", has_text="choose a LoRA first").wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "lora_error.png"))
        prompt = page.locator("#prompt textarea")
        prompt.fill("still usable")  # no "Error" badge over the prompt
        assert prompt.input_value() == "still usable"
        browser.close()
