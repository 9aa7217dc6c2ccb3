"""The Train tab in a real browser: the base-model box lists a tiny SDXL folder and not a tiny SD3 one, and choosing
it sets "LoRA for"; a run this browser started is offered for Resume after a reload and after a restart of the
server; a visitor with another browser never sees it."""

import json
import os
import re
import shutil

import pytest

from t2i.models.tiny import save_tiny_model
from app_start import free_port
from test_train_lora import _teal_images

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium")
# Chromium, the real app and a trainer
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]
ARTIFACTS = os.environ.get("T2I_TEST_ARTIFACTS", "artifacts")


def _open_train_tab(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Train").click()


def _stopped_run_options(page, screenshot: str = "") -> tuple[str, list[str]]:
    """Click the "Your stopped runs" box (its focus asks the server); return the server's answer and the options
    the page then shows."""
    # other events answer on the same route: take the answer of this event, by its index in the page's config
    runs_event = page.evaluate("() => window.gradio_config.dependencies.find(d => d.api_name === 'train_runs').id")
    with page.expect_response(lambda r: "/gradio_api/run/" in r.url and r.request.method == "POST"
                              and json.loads(r.request.post_data or "{}").get("fn_index") == runs_event,
                              timeout=60_000) as answer:
        page.locator("#train_resumable input").click()
    reply = answer.value.text()
    page.wait_for_timeout(300)  # the answer is in; give the page a moment to render it
    options = page.get_by_role("option").all_inner_texts()
    if screenshot:
        os.makedirs(ARTIFACTS, exist_ok=True)
        page.screenshot(path=os.path.join(ARTIFACTS, screenshot))
    page.keyboard.press("Escape")
    return reply, options


def _choose_base_model(page, option: str, family: str) -> list[str]:
    """Open the base-model box, pick `option` as a user does and wait for "LoRA for" to show `family`; return the
    options the list showed."""
    page.locator("#train_base_model input").click()
    options = page.locator("#train_base_model").get_by_role("option")
    options.first.wait_for()
    shown = [text.split("\n")[-1] for text in options.all_inner_texts()]  # the chosen one has a check mark line
    page.locator("#train_base_model").get_by_role("option", name=option, exact=True).click()
    playwright.expect(page.locator("#train_family input")).to_have_value(family, timeout=30_000)
    return shown


def test_a_browser_finds_its_stopped_run_after_reload_and_restart_and_nobody_else_does(launch_app, tmp_path):
    images = _teal_images(tmp_path / "images", count=3)
    save_tiny_model("sdxl", tmp_path / "models" / "tiny_xl")
    save_tiny_model("sd3", tmp_path / "models" / "tiny_sd3")  # SD3 LoRAs cannot train: never offered
    port = free_port()
    env = dict(T2I_TRAIN_LOCK=str(tmp_path / "train.lock"), T2I_TRAIN_THREADS="1",
               T2I_MODEL_DIR=str(tmp_path / "models"))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        mine = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        with launch_app(tmp_path / "app-data", port=port, **env) as url:
            _open_train_tab(mine, url)
            family = mine.locator("#train_family input")
            playwright.expect(family).to_have_value("Stable Diffusion 1.x/2.x", timeout=30_000)  # the embedded model's
            options = _choose_base_model(mine, "tiny_xl (SDXL (Pony, Illustrious))", "SDXL (Pony, Illustrious)")
            assert "tiny_xl (SDXL (Pony, Illustrious))" in options, options
            assert not any("tiny_sd3" in option for option in options), options
            os.makedirs(ARTIFACTS, exist_ok=True)
            mine.screenshot(path=os.path.join(ARTIFACTS, "browser-train-sdxl-base.png"), full_page=True)
            _choose_base_model(mine, "embedded (Stable Diffusion 1.x/2.x)", "Stable Diffusion 1.x/2.x")  # trains below
            mine.locator("#train_files input[type=file]").set_input_files(sorted(str(f) for f in images.iterdir()))
            mine.locator("#train_check").click()
            mine.locator("#train_notes").get_by_text("3 images").wait_for(timeout=120_000)
            mine.locator("#train_name textarea").fill("browser_run")
            mine.locator("#train_trigger textarea").fill("tlq")
            mine.locator("#train_steps input").fill("40")
            mine.locator("#train_checkpoint_every input").fill("2")
            mine.locator("#train_start").click()
            state = mine.locator("#train_state")
            state.get_by_text(re.compile(r"running\s+step ([3-9]|[1-3]\d)/40")).wait_for(timeout=300_000)
            mine.locator("#train_cancel").click()
            state.get_by_text("cancelled").first.wait_for(timeout=60_000)
            run_id = mine.locator("#train_run textarea").input_value()
            assert re.fullmatch(r"\d{8}-\d{6}-browser_run-[0-9a-f]{16}", run_id), run_id

            mine.reload()
            _open_train_tab(mine, url)
            reply, options = _stopped_run_options(mine, screenshot="browser-train-stopped-runs.png")
            assert run_id in reply
            assert any("browser_run: step" in o and run_id in o for o in options), options

            stranger = browser.new_context().new_page()  # another visitor: empty localStorage
            _open_train_tab(stranger, url)
            reply, options = _stopped_run_options(stranger)
            assert "browser_run" not in reply and not any("browser_run" in o for o in options), (reply, options)

        # the server restarts (same data folder, same address): the browser can still read its list
        with launch_app(tmp_path / "app-data", port=port, **env) as url:
            _open_train_tab(mine, url)
            reply, options = _stopped_run_options(mine)
            assert run_id in reply and any("browser_run: step" in o for o in options), options
        browser.close()
