"""Running an X/Y/Z plot: every cell is its own request through the engine (the safety gate included), so a cell
is the very image its request makes alone; then one labelled grid per Z value.

Everything is checked before the first image: the axes, each cell's request (its values, its prompt through the
safety gate, its model), the number of images (T2I_MAX_IMAGES), the sampling steps all cells take together
(T2I_GRID_MAX_STEPS, the time budget) and the grid's size (T2I_GRID_MAX_PIXELS).
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image

from t2i.generation.engine import Engine
from t2i.generation.progress import GenerationCancelled
from t2i.grid.axes import Axis
from t2i.grid.drawing import draw_grid, plan_layout, stack
from t2i.recipes.infotext import write_atomically
from t2i.recipes.labels import Labeller
from t2i.request import MAX_SEED, GeneratedImage, GenerationRequest, RequestError
from t2i.safety.gate import PromptRefused

GRID_KEY = "t2i_grid"  # the PNG text chunk with the grid's axes, labels and cells
AXIS_NAMES = ("X", "Y", "Z")


@dataclass
class Cell:
    """One cell: its place, its request, and the image that request made."""

    column: int
    row: int
    page: int  # which Z value
    request: GenerationRequest
    image: GeneratedImage | None = None


@dataclass
class Plot:
    """A planned plot: its axes (unused ones have the single value None) and every cell's request."""

    axes: list[Axis | None]
    cells: list[Cell]
    grids: list[Image.Image] = field(default_factory=list)

    def values(self, index: int) -> tuple:
        return self.axes[index].values if self.axes[index] else (None,)

    def labels(self, index: int) -> list[str]:
        axis = self.axes[index]
        return [axis.value_label(v) for v in axis.values] if axis else []

    def description(self) -> dict:
        """What the grid PNG records about itself: its axes, their labels, and the cells' seeds and prompts."""
        return {"axes": {name: {"field": axis.field, "values": [list(v) if isinstance(v, tuple) else v
                                                                 for v in axis.values]}
                         for name, axis in zip(AXIS_NAMES, self.axes) if axis},
                "labels": {name: self.labels(i) for i, name in enumerate(AXIS_NAMES) if self.axes[i]},
                "cells": [{"column": c.column, "row": c.row, "page": c.page,
                           "seed": c.image.seed if c.image else None,
                           "prompt": c.image.parameters["prompt"] if c.image else c.request.prompt}
                          for c in self.cells]}


def plan_plot(engine: Engine, request: GenerationRequest, axes: list[Axis | None],
              check_model: Callable[[str], None] | None = None) -> Plot:
    """Check the plot and every cell's request; raise RequestError before any image is made."""
    settings = engine.settings
    axes = (list(axes) + [None] * 3)[:3]
    if request.batch_count * request.batch_size != 1:
        raise RequestError("an X/Y/Z plot makes one image per cell: set batch count and batch size to 1")
    if request.seed == -1:  # one random seed for the whole plot, so its cells differ only by their axes
        request = replace(request, seed=secrets.randbelow(MAX_SEED + 1))
    for name, axis in zip(AXIS_NAMES, axes):
        if axis is not None:
            try:
                axis.check(request)
            except RequestError as exc:
                raise RequestError(f"{name} axis: {exc}") from None
    plot = Plot(axes, [])
    count = len(plot.values(0)) * len(plot.values(1)) * len(plot.values(2))
    if count > settings.max_images:
        raise RequestError(f"the plot has {count} cells; the limit is {settings.max_images} images (T2I_MAX_IMAGES)")
    for page, row, column in itertools.product(*(range(len(plot.values(i))) for i in (2, 1, 0))):
        cell_request = request
        for index, position in ((0, column), (1, row), (2, page)):
            if axes[index] is not None:
                cell_request = axes[index].apply(cell_request, axes[index].values[position])
        plot.cells.append(Cell(column, row, page, cell_request))
    steps = sum(cell.request.steps for cell in plot.cells if isinstance(cell.request.steps, int))
    if steps > settings.grid_max_steps:
        raise RequestError(f"the plot's cells take {steps} sampling steps together; the limit is "
                           f"{settings.grid_max_steps} (T2I_GRID_MAX_STEPS)")
    sizes = []
    for cell in plot.cells:  # each cell's values, prompt (through the gate) and model, as its run will see them
        where = ", ".join(f"{n}={axes[i].value_label(axes[i].values[p])!r}" for i, (n, p) in enumerate(
            zip(AXIS_NAMES, (cell.column, cell.row, cell.page))) if axes[i] is not None)
        try:
            if check_model is not None:
                check_model(cell.request.model)
            prepared = engine.prepare(cell.request)
        except PromptRefused:  # as the gate words it: which value tripped it is not said
            raise
        except RequestError as exc:
            raise RequestError(f"cell {where}: {exc}") from exc
        sizes.append((prepared.width, prepared.height))
    cell_size = (max(w for w, _ in sizes), max(h for _, h in sizes))
    layout = _layout(plot, cell_size)
    width, height = layout.size
    if width * height * len(plot.values(2)) > settings.grid_max_pixels:
        raise RequestError(f"the grid would be {width}x{height * len(plot.values(2))} pixels; the limit is "
                           f"{settings.grid_max_pixels} pixels (T2I_GRID_MAX_PIXELS)")
    return plot


def _layout(plot: Plot, cell_size: tuple[int, int]):
    return plan_layout(len(plot.values(0)), len(plot.values(1)), cell_size, x_labels=plot.axes[0] is not None,
                       y_labels=plot.axes[1] is not None, title=plot.axes[2] is not None)


class PlotStopped(RequestError):
    """The plot was stopped before its last cell: no grid is made, and nothing of it is kept."""


class RunningPlots:
    """The cancel events of each session's running plots, so that a Stop reaches them (see run_plot)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: dict[str, set[threading.Event]] = {}

    @contextmanager
    def running(self, session: str) -> Iterator[threading.Event]:
        """A cancel event for one plot of `session`, registered while the plot runs."""
        cancel = threading.Event()
        with self._lock:
            self._running.setdefault(session, set()).add(cancel)
        try:
            yield cancel
        finally:
            with self._lock:  # an ended plot leaves nothing behind
                self._running[session].discard(cancel)
                if not self._running[session]:
                    del self._running[session]

    def stop(self, session: str) -> int:
        """Stop every running plot of `session`; returns how many there were."""
        with self._lock:
            running = list(self._running.get(session, ()))
        for cancel in running:
            cancel.set()
        return len(running)


def run_plot(engine: Engine, plot: Plot, on_cell: Callable[[int, int], None] | None = None,
             cancel: threading.Event | None = None) -> Plot:
    """Make every cell's image through `engine.generate` (each screened by the safety gate), then the grids.

    A `cancel` set while it runs stops it between cells, or within a cell at its next sampling step, with
    PlotStopped; the plot then has no grids.
    """
    for done, cell in enumerate(plot.cells):
        try:
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("stopped")
            cell.image = engine.generate(cell.request, cancel=cancel).images[0]
        except GenerationCancelled:
            raise PlotStopped(f"the plot was stopped after {done} of {len(plot.cells)} cells; no grid was made "
                              "and its images were not kept") from None
        if on_cell is not None:
            on_cell(done + 1, len(plot.cells))
    shown = [c.image.image for c in plot.cells if c.image.image is not None]
    cell_size = (max((i.width for i in shown), default=64), max((i.height for i in shown), default=64))
    layout = _layout(plot, cell_size)
    for page in range(len(plot.values(2))):
        cells = [[None] * layout.columns for _ in range(layout.rows)]
        for cell in plot.cells:
            if cell.page == page:
                cells[cell.row][cell.column] = cell.image.image
        title = plot.labels(2)[page] if plot.axes[2] else ""
        plot.grids.append(draw_grid(cells, layout, plot.labels(0), plot.labels(1), title))
    return plot


def grid_image(plot: Plot) -> Image.Image:
    """The plot as one image: its grid, or its grids (one per Z value) stacked."""
    return plot.grids[0] if len(plot.grids) == 1 else stack(plot.grids)


def save_plot(plot: Plot, grid_path: Path, cells_folder: Path, labeller: Labeller = Labeller(),
              unique: bool = False) -> list[Path]:
    """Write the grid PNG (its recipe: the first cell's, plus the plot's description) and each cell's own PNG
    with its recipe; returns the paths, the grid first. Withheld cells get no file.

    `unique` adds an id chunk to each file, for files a web page is served (see PITFALLS: Gradio's file cache).
    """
    first = next((c.image for c in plot.cells if c.image.image is not None), None)
    if first is None:
        raise RequestError("the safety checker withheld every cell; no file written")
    def file_id() -> dict:
        return {"t2i_file_id": uuid.uuid4().hex[:12]} if unique else {}

    extra = {GRID_KEY: json.dumps(plot.description(), sort_keys=True), **file_id()}
    blobs = [(grid_path, labeller.png(grid_image(plot), first.parameters, extra, title=grid_path.name))]
    for cell in plot.cells:
        if cell.image.image is not None:
            own_id = file_id()
            name = "-".join([f"z{cell.page + 1}-y{cell.row + 1}-x{cell.column + 1}", str(cell.image.seed),
                             *own_id.values()])
            path = cells_folder / f"{name}.png"
            blobs.append((path, labeller.png(cell.image.image, cell.image.parameters, own_id, title=path.name)))
    for path, blob in blobs:  # encoded first, so a failure part-way leaves no partial set
        write_atomically(path, blob)
    return [path for path, _ in blobs]
