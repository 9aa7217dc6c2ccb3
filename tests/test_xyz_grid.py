"""X/Y/Z plots: A1111 axis syntax, refusals before any image, and a grid whose size, labels and cells are measured
(each cell the same bytes as its request run alone)."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest
from PIL import Image

from t2i.cli import main
from t2i.grid.axes import PROMPT_SR, Axis, field_for, parse_values, split_values
from t2i.grid.drawing import draw_label, font_for, plan_layout
from t2i.grid.plot import GRID_KEY, PlotStopped, RunningPlots, plan_plot, run_plot, save_plot
from t2i.recipes.pnginfo import read_png
from t2i.request import GenerationRequest, RequestError
from t2i.safety.gate import PromptRefused

PROMPT = "a red circle on a blue background"


@pytest.mark.parametrize("field, text, values", [
    ("steps", "1-5", [1, 2, 3, 4, 5]),
    ("steps", "1-10 (+3)", [1, 4, 7, 10]),
    ("seed", "10-4 (-3)", [10, 7, 4]),
    ("seed", "-1, 3", [-1, 3]),
    ("steps", "1-3 [5]", [1, 2, 2, 2, 3]),
    ("cfg", "3-7 (+2), 9", [3.0, 5.0, 7.0, 9.0]),
    ("cfg", "1-2 [3]", [1.0, 1.5, 2.0]),
    ("cfg", "2.5, 7.25", [2.5, 7.25]),
    ("sampler", "Euler, DPM++ 2M", ["Euler", "DPM++ 2M"]),
    (PROMPT_SR, 'red, "green, dark", yellow', ["red", "green, dark", "yellow"]),
    ("styles", "a, b", [("a",), ("b",)]),
])
def test_a1111_value_syntax(field, text, values):
    assert parse_values(field, text) == values


def test_axis_names_and_bad_values():
    assert [field_for(n) for n in ("CFG scale", "cfg", "Checkpoint", "Prompt S/R", "prompt_sr", "Seed")] == [
        "cfg", "cfg", "model", PROMPT_SR, PROMPT_SR, "seed"]
    assert split_values(' a ,  "b, c" ,') == ["a", "b, c"]
    with pytest.raises(RequestError, match="unknown plot axis 'colour'"):
        Axis.parse("colour", "1, 2")
    with pytest.raises(RequestError, match="'x' is not a whole number"):
        Axis.parse("steps", "3, x")
    with pytest.raises(RequestError, match="never gets from 1 to 5"):
        Axis.parse("steps", "1-5 (-1)")
    with pytest.raises(RequestError, match="write it as NAME:VALUES"):
        Axis.from_spec("cfg 3,5")
    with pytest.raises(RequestError, match="more than 1000 values"):
        Axis.parse("seed", "1-5000")


def test_refusals_come_before_any_image(engine):
    plan = lambda axes, **fields: plan_plot(engine, GenerationRequest(**{"prompt": PROMPT, "steps": 2, **fields}),
                                            axes)
    with pytest.raises(RequestError, match=r"17 cells; the limit is 16 images \(T2I_MAX_IMAGES\)"):
        plan([Axis.parse("seed", "1-17")])
    with pytest.raises(RequestError, match=r"take 2296 sampling steps together; the limit is 2000"):
        plan([Axis.parse("steps", "140-147"), Axis.parse("seed", "1, 2")], steps=150)
    with pytest.raises(RequestError, match=r"cell X='Sampler: Nope'.*unknown sampler 'Nope'"):
        plan([Axis.parse("sampler", "Euler, Nope")])
    with pytest.raises(RequestError, match=r"cell .*'Steps: 151'.*steps must be from 1 to 150"):
        plan([Axis.parse("steps", "150, 151")])
    with pytest.raises(RequestError, match=r"Y axis: Prompt S/R: 'green' .* is not in the prompt"):
        plan([None, Axis.parse("Prompt S/R", "green, red")])
    with pytest.raises(RequestError, match="batch count and batch size to 1"):
        plan([Axis.parse("seed", "1, 2")], batch_size=2)
    with pytest.raises(RequestError, match=r"T2I_GRID_MAX_PIXELS"):
        plan_plot(_engine_with(engine, grid_max_pixels=64 * 64), GenerationRequest(prompt=PROMPT, steps=2),
                  [Axis.parse("seed", "1, 2")])
    with pytest.raises(PromptRefused):  # every cell's prompt passes the gate before anything runs
        plan([Axis.parse("Prompt S/R", "circle, naked person")])


def _engine_with(engine, **settings):
    """The session engine seen with other settings (its models and plugins shared), for the plan's limits."""
    other = object.__new__(type(engine))
    other.__dict__.update(engine.__dict__, settings=dataclasses.replace(engine.settings, **settings))
    return other


def crop(image: Image.Image, box) -> bytes:
    return image.crop(box).tobytes()


def test_grid_size_labels_and_cells_equal_their_solo_runs(engine, tmp_path):
    axes = [Axis.parse("CFG scale", "3, 6"), Axis.parse("Prompt S/R", "red, green"), Axis.parse("seed", "4, 9")]
    plot = run_plot(engine, plan_plot(engine, GenerationRequest(prompt=PROMPT, steps=2, seed=1), axes))
    assert len(plot.cells) == 8 and len(plot.grids) == 2
    first = plot.cells[0].image.image
    layout = plan_layout(2, 2, first.size, x_labels=True, y_labels=True, title=True)
    font = font_for(first.width)
    for page, (grid, seed) in enumerate(zip(plot.grids, (4, 9))):
        assert grid.size == layout.size == (layout.left + 2 * first.width, layout.top + 2 * first.height)
        title = draw_label(f"Seed: {seed}", grid.width, layout.title_height, font)
        assert crop(grid, (0, 0, grid.width, layout.title_height)) == title.tobytes()
        for column, cfg in enumerate(("3.0", "6.0")):
            x = layout.cell_box(column, 0)[0]
            label = draw_label(f"CFG scale: {cfg}", layout.cell_width, layout.top - layout.title_height, font)
            assert crop(grid, (x, layout.title_height, x + layout.cell_width, layout.top)) == label.tobytes()
        for row, colour in enumerate(("red", "green")):
            y = layout.cell_box(0, row)[1]
            label = draw_label(colour, layout.left, layout.cell_height, font)
            assert crop(grid, (0, y, layout.left, y + layout.cell_height)) == label.tobytes()
            for column, cfg in enumerate((3.0, 6.0)):
                solo = engine.generate(GenerationRequest(prompt=f"a {colour} circle on a blue background", cfg=cfg,
                                                         seed=seed, steps=2)).images[0].image
                assert crop(grid, layout.cell_box(column, row)) == solo.tobytes()
                cell = next(c for c in plot.cells if (c.column, c.row, c.page) == (column, row, page))
                assert cell.image.image.tobytes() == solo.tobytes()
    # the axes change the images: the four cells of a page differ in their mean colour
    means = [np.asarray(c.image.image, dtype=float).mean(axis=(0, 1)) for c in plot.cells[:4]]
    assert len({m.round(3).tobytes() for m in means}) == 4
    paths = save_plot(plot, tmp_path / "grid.png", tmp_path / "cells")
    assert len(paths) == 9 and Image.open(paths[0]).size == (layout.size[0], 2 * layout.size[1])
    described = json.loads(Image.open(paths[0]).text[GRID_KEY])
    assert described["labels"]["Y"] == ["red", "green"] and len(described["cells"]) == 8
    recipe = read_png(paths[1]).form  # each cell's own PNG carries the recipe that remakes it
    assert (recipe["prompt"], recipe["cfg"], recipe["seed"]) == (PROMPT, 3.0, 4)


class StopDuringFirstStep:
    """The real engine, with the plot's Stop pressed while the first cell takes its first sampling step."""

    def __init__(self, engine, press_stop):
        self.engine, self.press_stop = engine, press_stop

    def generate(self, request, on_progress=None, cancel=None):
        return self.engine.generate(request, lambda event: self.press_stop(), cancel)


def test_stop_ends_the_plot_between_cells_or_within_one_and_keeps_nothing(engine):
    axes = [Axis.parse("CFG scale", "3, 6"), Axis.parse("seed", "1, 2")]
    running = RunningPlots()
    plot = plan_plot(engine, GenerationRequest(prompt=PROMPT, steps=2, seed=1), axes)
    with running.running("mine") as cancel, running.running("another") as other:
        # between cells: Stop pressed once the first cell is made
        with pytest.raises(PlotStopped, match="stopped after 1 of 4 cells; no grid was made"):
            run_plot(engine, plot, on_cell=lambda done, total: running.stop("mine"), cancel=cancel)
        assert plot.grids == [] and not other.is_set()  # another session's plot runs on
    assert running.stop("mine") == 0  # an ended plot leaves nothing registered
    plot = plan_plot(engine, GenerationRequest(prompt=PROMPT, steps=20, seed=1), axes)
    with running.running("mine") as cancel:  # within a cell: at its next step, not after its 20 steps
        steps = []
        stopping = StopDuringFirstStep(engine, lambda: steps.append(running.stop("mine")))
        with pytest.raises(PlotStopped, match="stopped after 0 of 4 cells"):
            run_plot(stopping, plot, cancel=cancel)
    assert steps == [1] and plot.grids == [] and plot.cells[0].image is None


@pytest.mark.slow
def test_cli_grid_writes_the_grid_and_cells_and_refuses_bad_axes(tmp_path, capsys):
    out = tmp_path / "g.png"
    assert main(["grid", PROMPT, "--x", "cfg:3,5", "--y", "seed:1-2", "--steps", "2", "-o", str(out)]) == 0
    assert Image.open(out).size[0] > 2 * 64 and len(list((tmp_path / "g-cells").glob("*.png"))) == 4
    assert main(["grid", PROMPT, "--x", "colour:1,2", "-o", str(tmp_path / "h.png")]) == 1
    assert "unknown plot axis 'colour'" in capsys.readouterr().err and not (tmp_path / "h.png").exists()


@pytest.mark.slow  # the real app
def test_stop_over_the_api_ends_the_running_plot_and_the_next_plot_runs(app_url):
    gradio_client = pytest.importorskip("gradio_client")
    client = gradio_client.Client(app_url, verbose=False)
    idle = client.predict(api_name="/xyz_stop")
    assert idle == "No plot of yours was running."
    job = client.submit(prompt=PROMPT, steps=50, seed=1, x_axis="seed", x_values="1-4", api_name="/xyz_plot")
    deadline = time.monotonic() + 120
    # each press is a round trip that the server answers only after acting on it: pressing again until one reaches
    # the running plot waits on that condition itself, with no pause between presses
    while (answer := client.predict(api_name="/xyz_stop")) == idle:
        assert time.monotonic() < deadline and not job.done(), "the plot never ran"
    assert answer.startswith("Stopped: the plot ended before its last cell; no grid was made")
    try:  # the same session's Stop also cancels the waiting client; if it still answers, it holds no files
        files, summary = job.result(timeout=120)
        assert files == [] and summary.startswith("Stopped: the plot was stopped after")
    except Exception as exc:
        assert "cancel" in f"{type(exc).__name__} {exc}".lower()
    files, summary = client.predict(prompt=PROMPT, steps=2, seed=1, x_axis="CFG scale", x_values="3, 6",
                                    api_name="/xyz_plot")
    assert len(files) == 3 and summary.startswith("2 cells")
