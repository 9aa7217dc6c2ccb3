"""Style files uploaded in the Styles tab: parsed by the styles importer, usable only by the session that sent them."""

import json
import os

import pytest

from t2i.eval.analyzer import analyze
from t2i.request import RequestError
from t2i.studio import GenerateForm, Studio
from t2i.styles import SessionStyles, Style, StyleLibrary

gradio_client = pytest.importorskip("gradio_client")
ARTIFACTS = os.environ.get("T2I_TEST_ARTIFACTS", "artifacts")

A1111_CSV = ('name,prompt,negative_prompt\n"On yellow","{prompt} on a yellow background",blurry\n'
             '"Big, please","a large {prompt}",\n')
FOOOCUS_JSON = [{"name": "On green", "prompt": "{prompt} on a green background", "negative_prompt": "noisy"},
                {"name": "Just red", "prompt": "a red {prompt}"}]


def write(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- core (no Gradio)


def test_session_styles_are_private_bounded_and_forgettable():
    shared = StyleLibrary({"Cinematic": Style("Cinematic", "cinematic {prompt}")})
    sessions = SessionStyles(shared, max_sessions=2, max_styles=3)
    assert sessions.add("a", [Style("Mine", "mine {prompt}")]) == ["Mine"]
    assert sessions.imported("a") == ["Mine"] and sessions.imported("b") == []
    assert "Mine" in sessions.library("a") and "Mine" not in sessions.library("b") and "Cinematic" in sessions.library("b")
    assert sessions.uses_imported("a", ["cinematic", "MINE"]) and not sessions.uses_imported("b", ["Mine"])
    with pytest.raises(ValueError, match=r"'cinematic' already exists \(a shared style\)"):
        sessions.add("a", [Style("cinematic")])
    with pytest.raises(ValueError, match="imported before in this session"):
        sessions.add("a", [Style("mine")])
    with pytest.raises(ValueError, match="at most 3 styles"):
        sessions.add("a", [Style("x"), Style("y"), Style("z")])
    with pytest.raises(ValueError, match="needs a session"):
        sessions.add("", [Style("x")])
    sessions.add("b", [Style("B")])
    sessions.add("c", [Style("C")])  # the least recently used session ("a") is dropped
    assert sessions.imported("a") == [] and sessions.imported("c") == ["C"]
    sessions.forget("c")
    assert sessions.imported("c") == [] and sessions.imported("b") == ["B"]


def test_studio_imports_for_one_session_and_applies_the_style(engine, settings, tmp_path):
    studio = Studio(settings, engine)
    assert studio.import_styles(write(tmp_path, "styles.csv", A1111_CSV), "alice") == ["On yellow", "Big, please"]
    assert studio.style_names("alice")[-2:] == ["On yellow", "Big, please"]
    assert "On yellow" not in studio.style_names("bob")

    form = GenerateForm(prompt="a blue circle", styles=["Big, please", "On yellow"], seed=2, steps=20)
    request = studio.request_from_form(form, "alice")
    # applied in order, each wrapping the last (A1111), before the engine sees the request
    assert (request.prompt, request.negative_prompt, request.styles) == (
        "a large a blue circle on a yellow background", "blurry", ())
    image = engine.generate(request).images[0].image
    found = analyze(image)
    assert found.background == "yellow" and found.objects and found.objects[0].colour == "blue"

    with pytest.raises(RequestError, match="unknown style 'Big, please'"):
        engine.generate(studio.request_from_form(form, "bob"))
    studio.forget_styles("alice")
    assert "On yellow" not in studio.style_names("alice")


@pytest.mark.parametrize("name, content, message", [
    ("bad.json", "{not json", "invalid JSON"),
    ("bad.json", '[{"prompt": "{prompt}"}]', "entry has no name"),
    ("bad.csv", "foo,bar\n1,2\n", "expected a CSV header"),
    ("bad.txt", "name,prompt\nA,a\n", "expected .json or .csv"),
    ("big.json", json.dumps([{"name": "Big", "prompt": "{prompt} " + "x" * 3000}]), "larger than 2048 bytes"),
    ("same.json", json.dumps([{"name": "Cinematic"}]), "'Cinematic' already exists"),
])
def test_studio_refuses_bad_files(engine, settings, tmp_path, name, content, message):
    import dataclasses

    studio = Studio(dataclasses.replace(settings, styles_max_kb=2), engine)
    with pytest.raises(RequestError, match=message):
        studio.import_styles(write(tmp_path, name, content), "alice")
    assert studio.session_styles.imported("alice") == []


# --------------------------------------------------------------------------- the app, through gradio_client


@pytest.mark.slow  # the real app
def test_upload_through_the_api_reaches_only_that_session(app_url, tmp_path):
    alice, bob = (gradio_client.Client(app_url, verbose=False) for _ in range(2))
    json_file = write(tmp_path, "fooocus_styles.json", json.dumps(FOOOCUS_JSON))
    text, picker = alice.predict(gradio_client.handle_file(str(json_file)), api_name="/import_styles")
    assert text.splitlines() == ["On green", "Just red"]
    assert ["On green", "On green"] in picker["choices"] and ["Cinematic", "Cinematic"] in picker["choices"]

    _, gallery, info, _ = alice.predict(prompt="a circle", styles=["Just red", "On green"], seed=3, steps=20,
                                        api_name="/generate")
    assert info.startswith("a red a circle on a green background\nNegative prompt: noisy\n")
    found = analyze(_image(gallery))
    assert found.background == "green" and found.objects and found.objects[0].colour == "red"

    # another user's picker and generations never see alice's presets
    with pytest.raises(gradio_client.exceptions.AppError, match="not in the list of choices"):
        bob.predict(prompt="a circle", styles=["Just red"], steps=2, api_name="/generate")
    assert bob.predict(api_name="/forget_styles")[0] == ""

    csv_file = write(tmp_path, "styles.csv", A1111_CSV)
    text, _ = alice.predict(gradio_client.handle_file(str(csv_file)), api_name="/import_styles")
    assert text.splitlines() == ["On green", "Just red", "On yellow", "Big, please"]

    text, picker = alice.predict(["Just red", "Cinematic"], api_name="/forget_styles")
    assert text == "" and picker["value"] == ["Cinematic"] and ["Just red", "Just red"] not in picker["choices"]
    with pytest.raises(gradio_client.exceptions.AppError, match="not in the list of choices"):
        alice.predict(prompt="a circle", styles=["Just red"], steps=2, api_name="/generate")


@pytest.mark.slow  # the real app
@pytest.mark.parametrize("name, content, message", [
    ("broken.json", "[{\"name\": ", "invalid JSON"),
    ("styles.csv", "title,words\nA,b\n", "expected a CSV header with columns name,prompt,negative_prompt"),
    ("styles.json", json.dumps([{"name": "Cinematic"}]), "'Cinematic' already exists"),
    ("huge.json", json.dumps([{"name": "Huge", "prompt": "{prompt} " + "x" * 1_100_000}]),
     "larger than 1048576 bytes"),
])
def test_bad_upload_is_a_clear_api_error(app_url, tmp_path, name, content, message):
    client = gradio_client.Client(app_url, verbose=False)
    with pytest.raises(gradio_client.exceptions.AppError, match=message):
        client.predict(gradio_client.handle_file(str(write(tmp_path, name, content))), api_name="/import_styles")


def _image(gallery):
    from PIL import Image

    item = gallery[0]
    return Image.open(item["image"] if isinstance(item, dict) else item[0])


# --------------------------------------------------------------------------- the page, in headless Chromium


@pytest.mark.slow  # the real app and Chromium
def test_upload_in_the_page_fills_the_style_picker(app_url, tmp_path):
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api")
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed")
    json_file = write(tmp_path, "fooocus_styles.json", json.dumps(FOOOCUS_JSON))
    broken = write(tmp_path, "broken.json", "[{")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url)
        page.get_by_role("tab", name="Styles").click()
        page.locator("#style_upload input[type=file]").set_input_files(str(broken))
        page.get_by_text("invalid JSON").first.wait_for(timeout=60_000)
        page.locator("#style_upload button[aria-label='Clear']").first.click()
        page.locator("#style_upload input[type=file]").set_input_files(str(json_file))
        page.wait_for_function("document.querySelector('#imported_styles textarea').value.includes('Just red')",
                               timeout=60_000)
        os.makedirs(ARTIFACTS, exist_ok=True)
        page.screenshot(path=os.path.join(ARTIFACTS, "browser-style-upload.png"), full_page=True)
        page.get_by_role("tab", name="Generate").click()
        page.get_by_label("Styles", exact=True).click()
        page.get_by_role("option", name="Just red").click()
        page.locator("#prompt textarea").fill("a circle")
        page.locator("#generate").click()
        page.wait_for_function("document.querySelector('#info textarea').value.startsWith('a red a circle')",
                               timeout=120_000)
        browser.close()
