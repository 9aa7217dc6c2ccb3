"""Front-end plumbing: streamed progress, early close cancels, safe uploads, per-session files."""

import threading

import pytest
from PIL import Image

from t2i.generation.stream import stream_generation
from t2i.recipes.outputs import save_result, session_folder
from t2i.web.uploads import load_image_file
from t2i.request import GenerationRequest, GenerationResult, RequestError
from t2i.studio import GenerateForm, Studio


def test_stream_yields_progress_then_the_result(engine):
    events = list(stream_generation(engine, GenerationRequest(prompt="a red circle", steps=6, seed=3)))
    assert [e.step for e in events[:-1]] == [1, 2, 3, 4, 5, 6]
    assert isinstance(events[-1], GenerationResult) and events[-1].images[0].seed == 3


def test_closing_the_stream_early_cancels_and_the_engine_keeps_serving(engine):
    cancel = threading.Event()  # set by the stream itself when it is closed, never by this test
    passes = []

    def count_and_hold(module, args):
        """Count UNet passes; the second one waits until the stream is closed, however fast sampling runs."""
        passes.append(1)
        if len(passes) == 2:
            assert cancel.wait(timeout=120)

    unet = engine.models.get("").pipeline.unet
    handle = unet.register_forward_pre_hook(count_and_hold)
    try:
        stream = stream_generation(engine, GenerationRequest(prompt="a red circle", steps=50, seed=3), cancel)
        assert next(stream).step == 1
        stream.close()  # a client that went away
    finally:
        handle.remove()
    assert cancel.is_set() and len(passes) == 2  # the step under way when it closed ends, and sampling stops
    result = engine.generate(GenerationRequest(prompt="a blue square", steps=4, seed=1))
    assert result.images[0].image.size == (64, 64)


def test_uploads_are_decoded_under_caps(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (80, 60), "red").save(good)
    assert load_image_file(good, 1 << 20, 10_000).size == (80, 60)
    with pytest.raises(RequestError, match="the limit is 4000 pixels"):
        load_image_file(good, 1 << 20, 4_000)
    with pytest.raises(RequestError, match="the limit is 0 MB"):
        load_image_file(good, 10, 10_000)
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:60])
    with pytest.raises(RequestError, match="could not be read"):
        load_image_file(broken, 1 << 20, 10_000)


def test_outputs_stay_in_their_session_folder(engine, tmp_path):
    assert session_folder(tmp_path, "../../etc") == tmp_path / "sessions" / "anonymous" / "outputs"
    result = engine.generate(GenerationRequest(prompt="a green star", steps=4, seed=9, batch_size=2))
    paths = save_result(result, session_folder(tmp_path, "abc123"))
    assert len(paths) == 2 and len(set(p.name for p in paths)) == 2
    assert all(p.parent == tmp_path / "sessions" / "abc123" / "outputs" for p in paths)
    assert "Seed: 10" in Image.open(paths[1]).info["parameters"]


def test_studio_refuses_fractional_form_values(settings, engine):
    studio = Studio(settings, engine)
    with pytest.raises(RequestError, match="steps must be a whole number"):
        studio.request_from_form(GenerateForm(prompt="x", steps=2.5))
    assert studio.request_from_form(GenerateForm(prompt="x", steps=20.0)).steps == 20
