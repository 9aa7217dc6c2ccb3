"""A person's path through the real page: type a prompt, click Generate, get a measured image."""

import os
import shutil
import urllib.request
from io import BytesIO

import pytest
from PIL import Image

from t2i.eval.analyzer import analyze

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium")
# Chromium and the real app
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]
ARTIFACTS = os.environ.get("T2I_TEST_ARTIFACTS", "artifacts")


@pytest.fixture
def page(app_url):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url)
        yield page
        browser.close()


def test_type_prompt_click_generate_and_see_the_image(page, app_url):
    page.locator("#prompt textarea").fill("a large blue circle in the center on a yellow background")
    page.locator("#seed input").fill("4")
    page.locator("#generate").click()
    image = page.locator("#gallery img").first
    image.wait_for(timeout=120_000)
    # the result opens large (the 64x64 image drawn at least 256 px wide), not only as a thumbnail
    page.wait_for_function("() => [...document.querySelectorAll('#gallery img')].some("
                           "img => img.getBoundingClientRect().width >= 256)", timeout=30_000)
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, "browser-generate.png"), full_page=True)
    assert "Seed: 4" in page.locator("#info textarea").input_value()
    src = image.get_attribute("src")
    data = urllib.request.urlopen(src if src.startswith("http") else app_url.rstrip("/") + src).read()
    analysis = analyze(Image.open(BytesIO(data)))
    assert analysis.background == "yellow" and analysis.objects[0].colour == "blue"


def test_bad_input_shows_an_error_in_the_page(page):
    page.locator("#prompt textarea").fill("a (red circle")
    page.locator("#generate").click()
    page.get_by_text("unbalanced '('").first.wait_for(timeout=60_000)
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, "browser-error.png"))
