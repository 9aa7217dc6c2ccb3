"""The safety gate through the real app's API (gradio_client): refusals are clear errors, the preview stream
never carries a flagged frame, and no API parameter can turn checking off."""

from __future__ import annotations

import pytest

from test_safety_gate import TEST_CHECKERS

gradio_client = pytest.importorskip("gradio_client")


def test_a_refused_prompt_is_a_clear_api_error(app_url):
    client = gradio_client.Client(app_url, verbose=False)
    for fields in ({"prompt": "a n4k3d woman"}, {"prompt": "a woman on a beach", "negative_prompt": "clothes"}):
        with pytest.raises(Exception, match="this prompt was refused by the content policy"):
            client.predict(**fields, steps=2, api_name="/generate")
    assert client.predict(prompt="a blue circle", steps=2, seed=1, api_name="/generate")[1]  # still serving


def test_flagged_images_and_previews_never_leave_the_app(launch_app, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "test_checkers.py").write_text(TEST_CHECKERS)  # an image checker that flags everything
    with launch_app(tmp_path / "data", T2I_PLUGIN_DIRS=str(plugins)) as url:
        client = gradio_client.Client(url, verbose=False)
        job = client.submit(prompt="a blue circle", steps=12, seed=1, batch_size=2, api_name="/generate")
        with pytest.raises(Exception, match="image withheld by the safety checker"):
            job.result()
        assert not [output for output in job.outputs() if output[0] or output[1]]  # no preview, no gallery
        with pytest.raises(Exception):  # gradio_client refuses parameters the endpoint does not have
            client.predict(prompt="a blue circle", safety_checker=False, api_name="/generate")
        names = [p["parameter_name"] for p in client.view_api(return_format="dict", print_info=False)
                 ["named_endpoints"]["/generate"]["parameters"]]
        assert "prompt" in names and not [n for n in names if any(w in n for w in ("safe", "nsfw", "check"))]
        with pytest.raises(Exception, match="image withheld by the safety checker"):  # and it keeps serving
            client.predict(prompt="a green star", steps=2, api_name="/generate")
