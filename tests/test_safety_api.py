"""The safety gate through the real app's API (gradio_client): refusals are clear errors, the preview stream
never carries a flagged frame, and no API parameter can turn checking off."""

from __future__ import annotations

import pytest

from test_safety_gate import TEST_CHECKERS

pytestmark = pytest.mark.slow  # the real app

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client(launch_app, tmp_path_factory):
    """The app with the built-in checkers plus an image checker that flags everything (from a plugin folder)."""
    plugins = tmp_path_factory.mktemp("safety-plugins")
    (plugins / "test_checkers.py").write_text(TEST_CHECKERS)
    # adapters and conditioners are switched off: their widgets are not what this module tests
    with launch_app(tmp_path_factory.mktemp("safety-app-data"), T2I_PLUGIN_DIRS=str(plugins),
                    T2I_DISABLED_PLUGINS="lora,controlnet,tint") as url:
        yield gradio_client.Client(url, verbose=False)


def test_a_refused_prompt_is_a_clear_api_error(client):
    for fields in ({"prompt": "a n4k3d woman"}, {"prompt": "a woman on a beach", "negative_prompt": "clothes"}):
        with pytest.raises(Exception, match="this prompt was refused by the content policy"):
            client.predict(**fields, steps=2, api_name="/generate")


def test_flagged_images_and_previews_never_leave_the_app(client):
    job = client.submit(prompt="a blue circle", steps=12, seed=1, batch_size=2, api_name="/generate")
    with pytest.raises(Exception, match="image withheld by the safety checker"):
        job.result()
    assert not [output for output in job.outputs() if output[0] or output[1]]  # no preview, no gallery
    with pytest.raises(Exception, match="image withheld by the safety checker"):  # and it keeps serving
        client.predict(prompt="a green star", steps=2, api_name="/generate")


def test_no_api_parameter_can_turn_checking_off(client):
    with pytest.raises(TypeError, match="not a valid key-word argument"):
        client.predict(prompt="a blue circle", safety_checker=False, api_name="/generate")
    names = [p["parameter_name"] for p in client.view_api(return_format="dict", print_info=False)
             ["named_endpoints"]["/generate"]["parameters"]]
    assert "prompt" in names and not [n for n in names if any(w in n for w in ("safe", "nsfw", "check"))]
