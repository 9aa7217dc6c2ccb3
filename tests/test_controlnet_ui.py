"""ControlNet through the running app: the control-map preview endpoint and a controlled generation."""

from __future__ import annotations

import gradio_client
import numpy as np
import pytest
from PIL import Image

from t2i.embedded.training.train_controlnet import canny_map, foreground_mask, heldout_controls, mask_iou

pytestmark = pytest.mark.slow  # the real app


@pytest.fixture(scope="module")
def client(app_url):
    return gradio_client.Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    image, mask, prompt = heldout_controls(3)[2]
    path = tmp_path_factory.mktemp("control") / "control.png"
    image.save(path)
    return path, image, mask, prompt


def test_preview_endpoint_returns_the_preprocessed_map(client, control):
    path, image, _, _ = control
    maps = client.predict(controlnet_1_enabled=True, controlnet_1_image=gradio_client.handle_file(str(path)),
                          controlnet_1_preprocessor="canny", api_name="/control_preview")
    assert len(maps) == 1
    shown = np.asarray(Image.open(maps[0]["image"]).convert("L")) > 127
    assert np.array_equal(shown, np.asarray(canny_map(image).convert("L")) > 127)


def test_preview_of_a_weighted_preprocessor_without_weights_is_a_clear_error(client, control):
    with pytest.raises(gradio_client.exceptions.AppError, match="needs the weights file"):
        client.predict(controlnet_1_enabled=True, controlnet_1_image=gradio_client.handle_file(str(control[0])),
                       controlnet_1_preprocessor="depth_midas", api_name="/control_preview")


def test_generate_with_a_controlnet_unit_through_the_api(client, control):
    path, _, mask, prompt = control
    _, images, parameters, _ = client.predict(
        prompt=prompt, seed=2, steps=20, controlnet_1_enabled=True,
        controlnet_1_image=gradio_client.handle_file(str(path)), api_name="/generate")
    assert mask_iou(foreground_mask(Image.open(images[0]["image"])), mask) >= 0.5
    assert "ControlNet 0: \"Module: canny, Model: embedded-edges [" in parameters
