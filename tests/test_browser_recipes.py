"""Recipes in the real page: a recipe link fills the form, Copy link gives such a link, PNG info sends a PNG back."""

import os
import shutil

import pytest

from t2i.recipes.outputs import save_result
from t2i.request import GenerationRequest

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium")
# Chromium and the real app
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]
ARTIFACTS = os.environ.get("T2I_TEST_ARTIFACTS", "artifacts")


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.locator("#generate").wait_for()
    return page


def wait_for_value(locator, expected):
    locator.page.wait_for_function("([el, v]) => el.value === v", arg=[locator.element_handle(), expected],
                                   timeout=30_000)


def number_input(page, label):
    return page.locator(f"input[type=number][aria-label='number input for {label}']")


def test_recipe_link_fills_the_form(browser, app_url):
    page = open_page(browser, app_url + "?prompt=a+green+ring+on+a+yellow+background&negative_prompt=red"
                                        "&seed=1234&steps=7&sampler=Euler+a&cfg=5.5")
    wait_for_value(page.locator("#prompt textarea"), "a green ring on a yellow background")
    assert page.locator("#negative textarea").input_value() == "red"
    assert page.locator("#seed input").input_value() == "1234"
    assert page.get_by_label("Sampler", exact=True).input_value() == "Euler a"
    assert number_input(page, "Steps").input_value() == "7"
    assert number_input(page, "CFG scale").input_value() == "5.5"
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, "browser-recipe-link.png"), full_page=True)


def test_copy_link_gives_a_link_to_the_image_just_made(browser, app_url):
    page = open_page(browser, app_url + "?prompt=a+green+ring+on+a+yellow+background&seed=1234&steps=7")
    wait_for_value(page.locator("#prompt textarea"), "a green ring on a yellow background")
    page.locator("#generate").click()
    page.locator("#gallery img").first.wait_for(timeout=120_000)
    info = page.locator("#info textarea").input_value()
    assert "Steps: 7," in info and "Seed: 1234," in info
    page.locator("#copy_link").click()
    link = page.locator("#recipe_link textarea")
    page.wait_for_function("el => el.value.startsWith('http')", arg=link.element_handle(), timeout=30_000)
    url = link.input_value()
    assert url.startswith(app_url + "?prompt=a+green+ring") and "seed=1234" in url and "steps=7" in url
    again = open_page(browser, url)
    wait_for_value(again.locator("#prompt textarea"), "a green ring on a yellow background")
    assert again.locator("#seed input").input_value() == "1234"


def test_bad_recipe_link_says_why(browser, app_url):
    page = open_page(browser, app_url + "?prompt=cat&steps=lots")
    page.get_by_text("steps must be a whole number").first.wait_for(timeout=30_000)


def test_png_info_reads_a_png_and_sends_it_to_the_form(browser, app_url, engine, tmp_path):
    result = engine.generate(GenerationRequest(prompt="a purple heart", seed=99, steps=5, sampler="DDIM"))
    png, = save_result(result, tmp_path)
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="PNG info").click()
    page.locator("#pnginfo_file input[type=file]").set_input_files(str(png))
    text = page.locator("#pnginfo_text textarea")
    page.wait_for_function("el => el.value.includes('Seed: 99')", arg=text.element_handle(), timeout=30_000)
    page.get_by_text("trainedAlgorithmicMedia").first.wait_for(timeout=30_000)
    page.locator("#send_txt2img").click()
    wait_for_value(page.locator("#prompt textarea"), "a purple heart")
    assert page.locator("#seed input").input_value() == "99"
    assert page.get_by_label("Sampler", exact=True).input_value() == "DDIM"
    assert page.locator("#prompt textarea").is_visible()  # the Generate tab is selected again
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, "browser-png-info.png"), full_page=True)
