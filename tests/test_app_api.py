"""The real app on 127.0.0.1, driven through gradio_client: every named endpoint, and bad input."""

import numpy as np
import pytest
from PIL import Image

from t2i.eval.analyzer import analyze

pytestmark = pytest.mark.slow  # the real app

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client(app_url):
    return gradio_client.Client(app_url, verbose=False)


def _images(gallery):
    return [Image.open(item["image"] if isinstance(item, dict) else item[0]) for item in gallery]


def test_generate_endpoint_returns_measured_images_with_recipes(client):
    preview, gallery, info, seed = client.predict(
        prompt="a large green triangle at the bottom on a white background", seed=11, steps=20,
        batch_size=2, api_name="/generate")
    images = _images(gallery)
    assert len(images) == 2 and seed == 11
    assert "Seed: 11" in info and "Seed: 12" in images[1].info["parameters"]
    found = analyze(images[0])
    assert found.background == "white" and found.objects[0].colour == "green"


def test_same_request_gives_the_same_pixels_through_the_api(client):
    runs = [_images(client.predict(prompt="a red ring", seed=5, steps=10, api_name="/generate")[1])[0]
            for _ in range(2)]
    assert np.array_equal(np.asarray(runs[0]), np.asarray(runs[1]))


@pytest.mark.parametrize("fields, message", [
    ({"prompt": ""}, "prompt is empty"),
    ({"prompt": "x" * 10_000}, "characters"),
    ({"width": 7}, "width must be"),
    ({"width": 100000}, "width must be"),
    ({"steps": 0}, "less than minimum"),  # Gradio's slider check answers first
    ({"steps": 1_000_000}, "greater than maximum"),
    ({"cfg": 1e9}, "greater than maximum"),  # NaN cannot even be sent as JSON
    ({"sampler": "Nope"}, "not in the list of choices"),  # Gradio's dropdown check answers first
    ({"model": "nothing-here"}, "unknown model"),
    ({"model": "/etc"}, "this server loads no other local paths"),  # a visitor cannot make it read server files
    ({"styles": ["Nope"]}, "not in the list of choices"),
])
def test_bad_input_is_a_clear_error_and_the_server_keeps_serving(client, fields, message):
    fields = {"prompt": "a red circle", "steps": 2, **fields}
    with pytest.raises(Exception, match=message):
        client.predict(**fields, api_name="/generate")
    assert client.predict(prompt="a red circle", steps=2, seed=1, api_name="/generate")[1]


def test_corrupt_init_image_is_a_clear_error(client, tmp_path):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    with pytest.raises(Exception, match="init image could not be read"):
        client.predict(prompt="a red circle", steps=2, init_image=gradio_client.handle_file(str(corrupt)),
                       api_name="/generate")


def test_seed_endpoints(client):
    assert client.predict(api_name="/random_seed") == -1
    assert client.predict(last_seed=123, api_name="/reuse_seed") == 123
    preview, status = client.predict(api_name="/stop")  # the page's preview is hidden and says it stopped
    assert preview["value"] is None and preview["visible"] is False and status.startswith("**Stopped.**")


def test_plugin_parameters_are_generated_api_parameters(client):
    """The example plugin's declared parameter becomes `tint_1_amount`; enabling it reddens the image."""
    plain = dict(prompt="a white square on a gray background", seed=4, steps=8, api_name="/generate")
    base = np.asarray(_images(client.predict(**plain)[1])[0].convert("RGB"), dtype=float)
    tinted = np.asarray(_images(client.predict(**plain, tint_1_enabled=True, tint_1_amount=1.0)[1])[0].convert("RGB"),
                        dtype=float)
    assert tinted[..., 0].mean() > base[..., 0].mean() + 20
    with pytest.raises(gradio_client.exceptions.AppError, match="greater than maximum value 2.0"):  # the slider checks first
        client.predict(**plain, tint_1_enabled=True, tint_1_amount=7.0)
