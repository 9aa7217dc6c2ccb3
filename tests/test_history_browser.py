"""History and the X/Y/Z plot in the real app: a result stays in the browser's history across a reload, another
visitor never sees it, delete removes it; `/xyz_plot` over the API returns the grid and its cells, and refuses a
bad axis with a clear message."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from t2i.grid.plot import GRID_KEY

playwright = pytest.importorskip("playwright.sync_api")
gradio_client = pytest.importorskip("gradio_client")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")]


def open_history(page, url: str, count: int) -> None:
    """Open the app's History tab and wait until it shows `count` images."""
    page.goto(url)
    page.locator("#generate").wait_for(timeout=120_000)
    page.get_by_role("tab", name="History").click()
    page.wait_for_function(f"() => document.querySelectorAll('#history_gallery img').length === {count}",
                           timeout=60_000)


def test_history_survives_a_reload_and_is_not_shown_to_another_visitor(browser, app_url):
    mine = browser.new_context().new_page()
    mine.goto(app_url)
    mine.locator("#generate").wait_for(timeout=120_000)
    mine.locator("#prompt textarea").fill("a yellow star on a black background")
    mine.locator("#seed input").fill("321")
    mine.locator("#generate").click()
    mine.wait_for_function("() => document.querySelector('#info textarea').value.includes('Seed: 321,')",
                           timeout=120_000)
    mine.get_by_role("tab", name="History").click()
    mine.wait_for_function("() => document.querySelectorAll('#history_gallery img').length === 1", timeout=60_000)

    open_history(mine, app_url, 1)  # a reload: the same browser storage, a new Gradio session
    mine.locator("#history_gallery .thumbnail-item").first.click()
    mine.wait_for_function("() => document.querySelector('#history_info textarea').value.includes('Seed: 321,')",
                           timeout=30_000)
    assert "a yellow star on a black background" in mine.locator("#history_info textarea").input_value()

    other = browser.new_context().new_page()  # another visitor: their own storage, an empty history
    open_history(other, app_url, 0)

    mine.locator("#history_delete").click()
    mine.wait_for_function("() => document.querySelectorAll('#history_gallery img').length === 0", timeout=30_000)
    open_history(mine, app_url, 0)


def test_xyz_plot_over_the_api(app_url):
    client = gradio_client.Client(app_url, verbose=False)
    files, summary = client.predict(prompt="a red circle on a blue background", steps=2, seed=5, x_axis="CFG scale",
                                    x_values="3, 6", y_axis="Prompt S/R", y_values="red, green",
                                    api_name="/xyz_plot")
    paths = [entry["image"] for entry in files]
    grid = Image.open(paths[0])
    assert len(paths) == 5 and summary.startswith("4 cells")
    assert '"Y": ["red", "green"]' in grid.text[GRID_KEY]
    cells = [Image.open(p) for p in paths[1:]]
    assert all(cell.size == cells[0].size for cell in cells) and grid.width > 2 * cells[0].width
    with pytest.raises(Exception, match="unknown plot axis 'colour'"):
        client.predict(prompt="a red circle", x_axis="colour", x_values="1, 2", api_name="/xyz_plot")
