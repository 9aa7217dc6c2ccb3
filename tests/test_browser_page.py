"""The page as a new user meets it: every part opens without errors, image inputs work, previews show, errors
say why and leave the form usable, and a batch's thumbnails carry their own recipes. Each result is measured."""

import os
import shutil
import urllib.request
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from t2i.embedded.training.train_controlnet import foreground_mask, heldout_controls, mask_iou
from t2i.embedded.world import Scene, ShapeObject, render
from t2i.eval.analyzer import analyze

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]
ARTIFACTS = os.environ.get("T2I_TEST_ARTIFACTS", "artifacts")
TABS = ("Generate", "PNG info", "Styles", "Train")
# where the page promises a file input, by the element that holds it
PROMISED_INPUTS = ("#init_image", "#mask", "#controlnet_1_image", "#controlnet_2_image", "#controlnet_3_image",
                   "#lora-library", "#train_files")


class WatchedPage:
    """A page that records page errors, console errors and failed same-origin requests."""

    def __init__(self, browser, url: str):
        self.problems: list[str] = []
        self.url = url
        self.page = browser.new_page(viewport={"width": 1280, "height": 1000})
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("console", lambda message: self.problems.append(f"console: {message.text}")
                     if message.type == "error" else None)
        self.page.on("response", lambda response: self.problems.append(f"{response.status} {response.url}")
                     if response.status >= 400 and response.url.startswith(url) else None)
        self.page.goto(url)
        self.page.locator("#generate").wait_for(timeout=120_000)


def open_accordions(page) -> int:
    """Open every closed accordion on the visible tab, those inside opened ones too; how many were opened."""
    opened = 0
    while True:
        closed = [header for header in page.locator("button.label-wrap:not(.open)").all() if header.is_visible()]
        if not closed:
            return opened
        closed[0].click()  # opening one moves (and may reveal) the others: look again after each
        opened += 1


# an "Error" badge counts when no ancestor hides it (Gradio keeps hidden status trackers in the page)
_SHOWN_BADGES = """() => [...document.querySelectorAll('.error')].filter(badge => {
  if (badge.innerText !== 'Error' || !badge.closest('[data-testid="status-tracker"]')) return false;  // not toasts
  for (let node = badge; node; node = node.parentElement) {
    const style = getComputedStyle(node);
    if (style.opacity === '0' || style.visibility === 'hidden' || style.display === 'none') return false;
  }
  return true;
}).length"""


def visible_error_badges(page) -> int:
    """Widgets showing Gradio's red "Error" badge instead of themselves."""
    return page.evaluate(_SHOWN_BADGES)


def number_input(page, label: str):
    return page.locator(f"input[type=number][aria-label='number input for {label}']")


def set_number(page, label: str, value) -> None:
    field = number_input(page, label)
    field.fill(str(value))
    field.press("Enter")


def expect_toast(page, text: str) -> None:
    """Wait for a message toast that says `text`."""
    page.locator(".toast-body", has_text=text).first.wait_for(timeout=60_000)


def close_toasts(page) -> None:
    for close in page.locator(".toast-close").all():
        if close.is_visible():
            close.click()


def result_images(page, app_url: str, seed: int, count: int = 1) -> list[Image.Image]:
    """The images of the run with this seed, once it has finished (downloaded from the page's own links)."""
    page.wait_for_function("(seed) => document.querySelector('#info textarea').value.includes(`Seed: ${seed},`)",
                           arg=seed, timeout=120_000)
    page.wait_for_function(f"() => document.querySelectorAll('#gallery img').length >= {count}", timeout=30_000)
    images = []
    for src in page.locator("#gallery img").evaluate_all("imgs => imgs.map(img => img.src)")[:count]:
        data = urllib.request.urlopen(src if src.startswith("http") else app_url.rstrip("/") + src).read()
        images.append(Image.open(BytesIO(data)).convert("RGB"))
    return images


def save_png(image: Image.Image, tmp_path, name: str) -> str:
    path = tmp_path / name
    image.save(path)
    return str(path)


def shot(page, name: str) -> None:
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, name), full_page=True)


def test_every_tab_and_accordion_opens_without_errors_and_shows_its_inputs(browser, app_url):
    watched = WatchedPage(browser, app_url)
    page = watched.page
    opened = 0
    for tab in TABS:
        page.get_by_role("tab", name=tab).click()
        opened += open_accordions(page)
        opened += open_accordions(page)  # accordions inside accordions
        page.wait_for_timeout(500)  # let lazily loaded components fetch their code (any failure is recorded)
        shot(page, f"page-{tab.lower().replace(' ', '-')}.png")
        for holder in PROMISED_INPUTS:
            if page.locator(holder).is_visible():
                assert page.locator(f"{holder} input[type=file]").count() >= 1, f"{holder} has no file input"
    assert opened >= 5
    for holder in PROMISED_INPUTS:
        assert page.locator(f"{holder} input[type=file]").count() >= 1, f"{holder} has no file input"
    assert watched.problems == []


def run_on_init_image(page, app_url, tmp_path, init, prompt: str, strength: float, seed: int, mask=None):
    """Upload an init image (and a mask) through the page, run the prompt on it; the result."""
    open_accordions(page)
    page.locator("#init_image input[type=file]").set_input_files(save_png(init, tmp_path, "init.png"))
    page.locator("#init_image img").wait_for()
    if mask is not None:
        page.locator("#mask input[type=file]").set_input_files(save_png(mask, tmp_path, "mask.png"))
        page.locator("#mask img").wait_for()
    page.locator("#prompt textarea").fill(prompt)
    set_number(page, "Denoising strength", strength)
    page.locator("#seed input").fill(str(seed))
    page.locator("#generate").click()
    return result_images(page, app_url, seed=seed)[0]


def test_img2img_from_an_uploaded_init_image_keeps_its_layout(browser, app_url, tmp_path):
    init = render(Scene((ShapeObject("square", "red", "large", "top left"),), background="blue"))
    page = WatchedPage(browser, app_url).page
    result = run_on_init_image(page, app_url, tmp_path, init, "a red square in the top left on a blue background",
                               strength=0.3, seed=11)
    shot(page, "page-img2img.png")
    analysis = analyze(result)
    difference = np.abs(np.asarray(result, float) - np.asarray(init, float)).mean()
    assert analysis.background == "blue" and analysis.objects[0].colour == "red"
    assert analysis.objects[0].position == "top left"
    assert difference < 20, f"mean pixel difference from the init image {difference:.1f}"
    assert "Denoising strength: 0.3" in page.locator("#info textarea").input_value()


def test_inpainting_with_an_uploaded_mask_changes_only_the_masked_area(browser, app_url, tmp_path):
    init = render(Scene((ShapeObject("circle", "yellow", "medium", "right"),), background="blue"))
    mask = Image.new("L", init.size, 0)
    mask.paste(255, (32, 0, 64, 64))  # repaint the right half, where the yellow circle is
    page = WatchedPage(browser, app_url).page
    result = np.asarray(run_on_init_image(page, app_url, tmp_path, init, "a red square on the right on a blue "
                                          "background", strength=1, seed=3, mask=mask), float)
    shot(page, "page-inpaint.png")
    change = np.abs(result - np.asarray(init, float)).mean(axis=2)
    assert change[:, :32].mean() < 2, f"unmasked half changed by {change[:, :32].mean():.1f} on average"
    assert change[:, 32:].mean() > 15, f"masked half changed by only {change[:, 32:].mean():.1f}"


def test_a_controlnet_unit_places_the_shape_where_its_control_image_says(browser, app_url, tmp_path):
    page = WatchedPage(browser, app_url).page
    open_accordions(page)
    ious = []
    for k, (control, shape, prompt) in enumerate(heldout_controls(3)):
        if k == 0:
            page.locator("#controlnet_1_enabled input").check()
        page.locator("#controlnet_1_image input[type=file]").set_input_files(
            save_png(control, tmp_path, f"control{k}.png"))
        page.locator("#controlnet_1_image img").wait_for()
        page.locator("#prompt textarea").fill(prompt)
        page.locator("#seed input").fill(str(k))
        page.locator("#generate").click()
        ious.append(mask_iou(foreground_mask(result_images(page, app_url, seed=k)[0]), shape))
    shot(page, "page-controlnet.png")
    print(f"mask IoU of 3 held-out control images through the page: {ious}")
    assert np.mean(ious) >= 0.6
    assert "controlnet" in page.locator("#info textarea").input_value().lower()


def test_the_live_preview_is_visible_and_changes_during_a_run(browser, app_url):
    page = WatchedPage(browser, app_url).page
    page.locator("#prompt textarea").fill("a purple heart in the center on a white background")
    set_number(page, "Steps", 150)
    page.locator("#generate").click()
    page.locator("#preview img").wait_for(timeout=120_000)
    seen, on_top = set(), 0
    page.wait_for_function("() => document.querySelector('#preview img')?.src", timeout=60_000)
    for _ in range(200):  # until three distinct previews were on screen, uncovered
        box = page.locator("#preview img").bounding_box()
        if box is None:
            break
        top = page.evaluate("([x, y]) => document.elementFromPoint(x, y)?.closest('#preview img') !== null",
                            [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
        on_top += top
        seen.add(page.locator("#preview img").get_attribute("src"))
        if len(seen) >= 3 and on_top >= 3:
            break
        page.wait_for_function("(old) => document.querySelector('#preview img')?.src !== old",
                               arg=page.locator("#preview img").get_attribute("src"), timeout=60_000)
    shot(page, "page-preview.png")
    page.locator("#stop").click()
    page.get_by_text("Stopped.").wait_for(timeout=30_000)
    page.locator("#preview").wait_for(state="hidden", timeout=30_000)
    assert len(seen) >= 3 and on_top >= 3, f"{len(seen)} distinct previews, {on_top} looks with the preview on top"


def test_each_refusal_shows_its_message_and_leaves_the_form_usable(browser, app_url, tmp_path):
    page = WatchedPage(browser, app_url + "?steps=abc").page
    expect_toast(page, "steps must be a whole number")
    close_toasts(page)
    assert visible_error_badges(page) == 0

    page.locator("#copy_link").click()
    expect_toast(page, "generate an image first")
    close_toasts(page)

    open_accordions(page)
    page.locator("#lora-library button", has_text="Add to prompt").click()
    expect_toast(page, "choose a LoRA first")
    close_toasts(page)

    page.get_by_role("tab", name="PNG info").click()
    page.locator("#pnginfo_file input[type=file]").set_input_files(
        save_png(Image.new("RGB", (8, 8), "white"), tmp_path, "plain.png"))
    expect_toast(page, "carries no generation parameters")
    close_toasts(page)
    page.locator("#pnginfo_text textarea").fill("a cat\nSteps: abc, Sampler: Foo, Seed: x")
    page.locator("#send_txt2img").click()
    expect_toast(page, "Steps must be a number")
    close_toasts(page)
    assert visible_error_badges(page) == 0

    page.locator("#pnginfo_text textarea").fill(
        "a blue star\nSteps: 7, Sampler: Euler, CFG scale: 4, Seed: 9, Size: 64x64, Model: someone_elses_model")
    page.locator("#send_txt2img").click()
    expect_toast(page, "names the model 'someone_elses_model'")
    close_toasts(page)
    assert page.locator("#model input").input_value() == "embedded"  # the model that works is kept
    assert number_input(page, "Steps").input_value() == "7"  # the rest of the recipe arrived
    page.get_by_role("tab", name="Styles").click()
    bad_csv = tmp_path / "styles.csv"
    bad_csv.write_text('name,prompt,negative_prompt\n"Broken,"{prompt} oil,\n')
    page.locator("#style_upload input[type=file]").set_input_files(str(bad_csv))
    expect_toast(page, "invalid CSV at line 2")
    close_toasts(page)
    assert visible_error_badges(page) == 0

    page.get_by_role("tab", name="Generate").click()
    assert visible_error_badges(page) == 0
    page.locator("#prompt textarea").fill("a red circle on a blue background")
    page.locator("#seed input").fill("5")
    page.locator("#generate").click()
    analysis = analyze(result_images(page, app_url, seed=5)[0])
    shot(page, "page-after-errors.png")
    assert analysis.background == "blue" and analysis.objects and analysis.objects[0].colour == "red"


def test_selecting_a_thumbnail_of_a_batch_shows_that_images_recipe(browser, app_url):
    page = WatchedPage(browser, app_url).page
    page.locator("#prompt textarea").fill("a green triangle on a white background")
    page.locator("#seed input").fill("500")
    set_number(page, "Batch size", 3)
    page.locator("#generate").click()
    result_images(page, app_url, seed=500, count=3)
    thumbnails = page.locator("#gallery .thumbnail-item")
    thumbnails.nth(2).click()
    page.wait_for_function("() => document.querySelector('#info textarea').value.includes('Seed: 502')",
                           timeout=30_000)
    assert page.locator("#last_seed input").input_value() == "502"
    page.locator("#copy_link").click()
    page.wait_for_function("() => document.querySelector('#recipe_link textarea').value.includes('seed=502')",
                           timeout=30_000)
    shot(page, "page-batch-selection.png")
