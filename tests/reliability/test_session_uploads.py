"""Uploads live in the data folder's uploads/ (not in the app folder), one record per browser session, and go
when that session's page closes; a file another open page also uploaded stays until that page closes too, and
generated outputs are kept.

A page keeps a heartbeat connection open for its session; closing the tab closes it, and Gradio then runs the
app's unload handlers. Here a raw socket holds that connection, so the test closes it at a known moment.
"""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app_calls import generate

pytestmark = pytest.mark.slow  # the real app (reliability suite)

REPO = Path(__file__).resolve().parents[2]
DELETION_TIMEOUT_S = 30
SESSION_ENDED = rb"session ended: \d+ uploads deleted"  # the app's log line once a closed page's uploads are gone
GENERATE = dict(prompt="a red circle in the middle on a white background", seed=5, steps=4, strength=0.6)


@dataclass
class PageSession:
    """One browser tab: a session hash, its heartbeat connection held open, and API calls under that hash."""

    hash: str
    client: Client
    heartbeat: socket.socket

    @classmethod
    def open(cls, url: str) -> "PageSession":
        session = uuid.uuid4().hex[:12]
        client = Client(url, verbose=False)
        client.session_hash = session  # every call and upload below belongs to this tab's session
        parts = urlsplit(url)
        heartbeat = socket.create_connection((parts.hostname, parts.port), timeout=10)
        heartbeat.sendall(f"GET /gradio_api/heartbeat/{session} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                          "Accept: text/event-stream\r\n\r\n".encode())
        answer = heartbeat.recv(4096)
        while b"ALIVE" not in answer and answer.startswith(b"HTTP/1.1 200"):
            answer += heartbeat.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        return cls(session, client, heartbeat)

    def img2img(self, init_image: Path) -> str:
        """Generate from `init_image`; the recipe text of the result."""
        output = generate(self.client, **GENERATE, init_image=handle_file(str(init_image)))
        assert len(output.pixels) == 1 and "Denoising strength: 0.6" in output.recipes[0], output.recipes
        return output.recipes[0]

    def close(self) -> float:
        """Close the tab (its heartbeat connection); the monotonic time it closed."""
        self.client.close()  # the client's own heartbeat thread (it may wait up to a second)
        self.heartbeat.close()
        return time.monotonic()


def picture(path: Path, colour: str) -> Path:
    """A small PNG whose bytes differ by `colour`, so each upload is its own file in Gradio's cache."""
    Image.new("RGB", (64, 64), colour).save(path)
    return path


def uploads_of(folder: Path, source: Path) -> list[Path]:
    """The files in the upload folder with `source`'s bytes (Gradio keeps the name, under a hash folder)."""
    data = source.read_bytes()
    return [p for p in folder.rglob(source.name) if p.is_file() and p.read_bytes() == data]


def outputs_of(data_dir: Path, session: str) -> list[Path]:
    return sorted((data_dir / "sessions" / session / "outputs").glob("*.png"))


def wait_until_gone(paths: list[Path], since: float) -> float:
    """Seconds from `since` until every path is gone, for the report (no speed is asserted: DELETION_TIMEOUT_S is
    only the deadline of a deletion that never comes)."""
    while any(p.exists() for p in paths):
        assert time.monotonic() - since < DELETION_TIMEOUT_S, [p for p in paths if p.exists()]
        time.sleep(0.005)
    return time.monotonic() - since


@pytest.fixture
def pictures(tmp_path) -> dict[str, Path]:
    names = {"a_only": "blue", "shared": "yellow", "b_only": "green"}
    return {name: picture(tmp_path / f"{name}.png", colour) for name, colour in names.items()}


def test_a_closed_pages_uploads_are_deleted_and_its_outputs_kept(reliability_url, reliability_data, gradio_uploads,
                                                                 pictures, report):
    first, second = PageSession.open(reliability_url), PageSession.open(reliability_url)
    try:
        first.img2img(pictures["a_only"])
        first.img2img(pictures["shared"])
        second.img2img(pictures["shared"])  # byte-identical and same name: Gradio keeps one file for both
        second.img2img(pictures["b_only"])
        uploaded = {name: uploads_of(gradio_uploads, source) for name, source in pictures.items()}
        assert all(len(paths) == 1 for paths in uploaded.values()), uploaded
        for (path,) in uploaded.values():
            assert path.resolve().is_relative_to(reliability_data.resolve())
            assert not path.resolve().is_relative_to(REPO)
        outputs = {page.hash: outputs_of(reliability_data, page.hash) for page in (first, second)}
        assert all(len(files) == 2 for files in outputs.values()), outputs

        ended = reliability_url.app.count_lines(SESSION_ENDED)
        first_gone = wait_until_gone(uploaded["a_only"], first.close())
        # the unload handler has finished (t2i/ui/uploads.py logs it): nothing else of the first page's is about to go
        reliability_url.app.wait_for_lines(SESSION_ENDED, ended + 1, timeout=DELETION_TIMEOUT_S)
        assert all(p.exists() for p in uploaded["shared"] + uploaded["b_only"]), "the open page lost its uploads"

        second_gone = wait_until_gone(uploaded["shared"] + uploaded["b_only"], second.close())
    finally:
        first.close()
        second.close()
    print(f"\nuploads deleted {first_gone * 1000:.0f} ms and {second_gone * 1000:.0f} ms after their page closed")
    kept = {session: outputs_of(reliability_data, session) for session in outputs}
    assert kept == outputs, "outputs must outlive the session"
    report["lost"].append(sum(len(files) for files in outputs.values()) - sum(len(files) for files in kept.values()))


def test_closing_a_real_browser_tab_deletes_its_upload(browser, reliability_url, gradio_uploads, tmp_path):
    """The same through Chromium: import a styles file in the Styles tab, then close the tab."""
    styles = tmp_path / "tab_styles.csv"
    styles.write_text("name,prompt,negative_prompt\nclosing_tab,{prompt} on a grey background,\n")
    page = browser.new_page()
    page.goto(reliability_url)
    page.get_by_role("tab", name="Styles").click()
    page.locator("#style_upload input[type=file]").set_input_files(str(styles))
    page.wait_for_function("() => document.querySelector('#imported_styles textarea').value.includes('closing_tab')",
                           timeout=60_000)  # the styles file was imported
    (upload,) = uploads_of(gradio_uploads, styles)
    page.close()
    gone = wait_until_gone([upload], time.monotonic())
    print(f"\nthe tab's upload was deleted {gone * 1000:.0f} ms after the tab closed")


@pytest.mark.slow
def test_an_upload_a_page_holds_unused_outlives_an_api_session_that_used_the_same_file(
        browser, reliability_url, gradio_uploads, tmp_path):
    """Issue 23: a Train tab holds uploaded images it has not checked yet; a gradio_client session uploads one of
    the same files (Gradio keeps it once), uses it and closes. The tab's check still finds every image."""
    images = [picture(tmp_path / f"r{i}.png", colour) for i, colour in enumerate(("red", "navy", "olive"))]
    client_only = picture(tmp_path / "client_only.png", "purple")
    page = browser.new_page()
    page.goto(reliability_url)
    page.get_by_role("tab", name="Train").click()
    # the input's upload event records the files for this tab: wait for its answer, not for a while
    with page.expect_response(lambda r: r.url.endswith("/gradio_api/run/predict") and r.ok
                              and "r0.png" in (r.request.post_data or "")):
        page.locator("#train_files input[type=file]").set_input_files([str(p) for p in images])
    (shared,) = uploads_of(gradio_uploads, images[0])

    api = PageSession.open(reliability_url)
    try:
        api.img2img(images[0])
        api.img2img(client_only)
        (theirs,) = uploads_of(gradio_uploads, client_only)
    finally:
        closed = api.close()
    wait_until_gone([theirs], closed)  # the session's unload has run
    assert shared.exists(), "closing the API session deleted a file an open page holds"

    page.locator("#train_check").click()
    notes = page.locator("#train_notes")
    notes.get_by_text("3 images").wait_for(timeout=60_000)
    page.close()
    wait_until_gone([shared], time.monotonic())  # and it goes when the last page holding it closes
