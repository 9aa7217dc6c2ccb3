"""History core: per-id folders, newest first, bounded by count and age, delete, and ids that cannot be guessed
or used to reach another history."""

from __future__ import annotations

import pytest
from PIL import Image

from t2i.eval.analyzer import analyze
from t2i.recipes.infotext import png_bytes
from t2i.recipes.pnginfo import read_png
from t2i.request import GenerationRequest, RequestError
from t2i.ui.history_tab import hires_fix_form
from t2i.web.history import History


class Clock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def result(folder, name: str, colour) -> str:
    path = folder / name
    Image.new("RGB", (8, 8), colour).save(path)
    return path


@pytest.fixture
def made(tmp_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    return [result(outputs, f"{i}-abc{i}.png", (i * 40, 0, 0)) for i in range(5)]


def test_newest_first_per_browser_and_another_id_sees_nothing(tmp_path, made):
    history = History(tmp_path / "history", max_items=10, max_days=7, clock=Clock())
    mine, other = History.new_id(), History.new_id()
    assert mine != other and History.is_id(mine) and not History.is_id("short") and not History.is_id(None)
    history.add(mine, made[:2])
    history.add(mine, made[2:3])
    names = [entry.name.split("-", 1)[1] for entry in history.entries(mine)]
    assert names == ["2-abc2.png", "1-abc1.png", "0-abc0.png"]
    assert history.entries(other) == []
    history.add(mine, made[2:3])  # the same result reported again is not a second entry
    assert len(history.entries(mine)) == 3
    # the copies are the results' bytes; the folder's name does not reveal the id
    assert history.entries(mine)[0].path.read_bytes() == made[2].read_bytes()
    assert mine not in str(history.entries(mine)[0].path)


def test_bounds_by_count_and_age(tmp_path, made):
    clock = Clock()
    history = History(tmp_path / "history", max_items=3, max_days=2, clock=clock)
    mine = History.new_id()
    history.add(mine, made)
    assert [e.name.split("-", 1)[1] for e in history.entries(mine)] == ["4-abc4.png", "3-abc3.png", "2-abc2.png"]
    assert len(list(history.entries(mine)[0].path.parent.iterdir())) == 3  # the dropped files are deleted
    clock.now += 86400
    history.add(mine, [result(made[0].parent, "5-new.png", "blue")])
    clock.now += 1.5 * 86400  # the first three are now 2.5 days old; the newest 1.5
    assert [e.name.split("-", 1)[1] for e in history.entries(mine)] == ["5-new.png"]


def test_delete_and_bad_ids(tmp_path, made):
    history = History(tmp_path / "history", max_items=10, max_days=7, clock=Clock())
    mine, other = History.new_id(), History.new_id()
    history.add(mine, made[:2])
    first = history.entries(mine)[0]
    with pytest.raises(RequestError, match="not in your history"):
        history.delete(other, first.name)  # another browser cannot delete it
    history.delete(mine, first.name)
    assert [e.name for e in history.entries(mine)] == [history.entries(mine)[0].name] and not first.path.exists()
    for bad in ("", "../" * 12, "x" * 20):
        with pytest.raises(RequestError, match="no history id"):
            history.entries(bad)


def test_send_to_hires_fix_remakes_the_image_at_twice_the_size(engine):
    first = engine.generate(GenerationRequest(prompt="a large red circle in the center on a blue background",
                                              seed=4, steps=8)).images[0]
    form = hires_fix_form(read_png(png_bytes(first.image, first.parameters)))
    assert (form["hires_scale"], form["seed"]) == (2.0, 4)
    hires = engine.generate(GenerationRequest(**{**form, "hires_steps": 4})).images[0]  # hires_denoise 0.5
    assert hires.image.size == (128, 128) and hires.parameters["hires_scale"] == 2.0
    before, after = analyze(first.image), analyze(hires.image)  # the same picture, larger
    assert after.background == before.background == "blue"
    assert [(o.shape, o.colour, o.position) for o in after.objects] == [
        (o.shape, o.colour, o.position) for o in before.objects] == [("circle", "red", "center")]
    own = read_png(png_bytes(hires.image, hires.parameters))  # a recipe with hires fix keeps its own settings
    assert hires_fix_form(own)["hires_steps"] == 4
    inpainted = engine.generate(GenerationRequest(prompt="a blue circle", seed=1, steps=2, init_image=first.image,
                                                  mask=Image.new("L", (64, 64), 255))).images[0]
    with pytest.raises(RequestError, match="hires fix remakes txt2img images; this one was made with inpaint"):
        hires_fix_form(read_png(png_bytes(inpainted.image, inpainted.parameters)))
