"""Hostile file reads and uploads (Gradio advisories CVE-2023-51449, CVE-2024-47164, CVE-2024-47167) and
foreign origins.

- Gradio's file routes serve no file of the system, the app folder or the private part of the data folder
  (safety audit log, LoRA library), however the path is spelled (absolute, `..` from a served folder,
  percent-encoded once or twice, relative to the app's working directory), nor one through a symlink
  planted in a served folder; folders are never listed. A file the app did return is served (the control).
- A file input that names a symlink in the upload folder, or a path outside it, is refused; so is a
  training zip whose member is a symlink.
- A foreign Origin gets no CORS grant, a cross-site "simple" POST cannot start a job, and a page reached
  through DNS rebinding (a Host header that is not loopback) is refused.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from app_calls import Endpoint, generate, output_files

pytestmark = pytest.mark.slow  # the real app (reliability suite)

REPO = Path(__file__).resolve().parents[2]
ROUTES = ["gradio_api/file={}", "file={}", "gradio_api/file/{}"]
NORMAL = dict(prompt="a yellow circle on a blue background", seed=6, steps=4)
FOREIGN = "https://evil.example"


@pytest.fixture(scope="module")
def served(reliability_url) -> Path:
    """Where the server keeps one generated image for its page (the file route serves it by design)."""
    result = Client(reliability_url, verbose=False, download_files=False).predict(**NORMAL, api_name="/generate")
    return Path(result[1][0]["image"]["path"])


def other_output(data_dir: Path) -> Path:
    """An image another session generated: a real PNG, but not an upload of this client."""
    return next(p for p in sorted((data_dir / "sessions").rglob("*.png")) if not p.is_symlink())


@pytest.fixture(scope="module")
def planted(reliability_data, gradio_uploads, served):
    """Symlinks planted in the folders Gradio serves (outputs, uploads) as a local attacker might: to secrets,
    and to another session's image (a valid PNG, servable by its own path: only the upload check refuses it
    as a file input)."""
    links = {reliability_data / "sessions" / "planted" / "outputs" / "passwd.png": Path("/etc/passwd"),
             gradio_uploads / "planted" / "audit.png": reliability_data / "safety_audit.jsonl",
             gradio_uploads / "planted" / "other.png": other_output(reliability_data)}
    for link, target in links.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    yield links
    for link in links:
        link.unlink()
    for folder in {link.parent for link in links}:
        folder.rmdir()


def secrets(reliability_data, gradio_uploads, planted) -> dict[str, tuple[Path, str]]:
    """What must never be served: name -> (path, text that would show it leaked; "" for a folder)."""
    audit_log = reliability_data / "safety_audit.jsonl"
    assert '"checker"' in audit_log.read_text()
    return {
        "passwd": (Path("/etc/passwd"), "root:"),
        "app source": (REPO / "app.py", "def main"),
        "settings source": (REPO / "t2i" / "settings.py", "T2I_DATA_DIR"),
        "safety audit log": (audit_log, '"checker"'),
        "LoRA library": (reliability_data / "loras" / "tint_a.safetensors", "\"dtype\""),
        **{f"symlink to {target.name}": (link, "root:" if target.name == "passwd" else '"checker"')
           for link, target in planted.items() if link.name != "other.png"},
        "upload folder listing": (gradio_uploads, ""),
        "sessions listing": (reliability_data / "sessions", ""),
    }


def spellings(path: Path, via: Path) -> list[str]:
    """Ways to write `path` in a file URL: plain, `..` from a served folder `via`, encoded once and twice."""
    climb = "/".join([".."] * len(via.parts)) + str(path)
    forms = [str(path), f"{via}/{climb}", quote(str(path), safe=""), f"{via}/{climb}".replace("..", "%2e%2e"),
             quote(quote(f"{via}/{climb}", safe=""), safe="")]
    if path.is_relative_to(REPO):  # relative to the app's working directory
        forms += [str(path.relative_to(REPO)), "./" + str(path.relative_to(REPO))]
    return forms


def test_file_routes_serve_no_private_file(reliability_url, reliability_data, gradio_uploads, planted, served, report):
    targets = secrets(reliability_data, gradio_uploads, planted)
    base = reliability_url.rstrip("/")
    leaked = []
    with httpx.Client(timeout=30) as http:
        control = http.get(httpx.URL(f"{base}/gradio_api/file={served}"))
        assert control.status_code == 200 and control.content[:8] == b"\x89PNG\r\n\x1a\n"  # the route does work
        for name, (path, marker) in targets.items():
            for via in (gradio_uploads, reliability_data / "sessions"):
                for form in spellings(path, via):
                    for route in ROUTES:
                        # httpx would normalise "../" away: send the raw path, as an attacker's client would
                        answer = http.get(httpx.URL(f"{base}/{route.format(form)}"))
                        refused = answer.status_code in (400, 403, 404) and not (marker and marker in answer.text)
                        report["hostile"].append(refused)
                        if not refused:
                            leaked.append((name, route.format(form), answer.status_code, answer.text[:80]))
    assert not leaked, leaked


def file_data(path) -> dict:
    """A file input naming a path on the server (sent over plain HTTP: gradio_client would upload a local file)."""
    return {"path": str(path), "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def test_file_inputs_naming_symlinks_or_outside_paths_are_refused(reliability_url, client, reliability_data,
                                                                  planted, served, report):
    before = output_files(reliability_data)
    endpoint = Endpoint.of(client, reliability_url, "generate")
    accepted = endpoint.call(**NORMAL, init_image=file_data(served))
    assert accepted.event == "complete", accepted  # a file in the upload folder is taken: the check works
    climbing = f"{served.parent}/{'../' * len(served.parts)}etc/passwd"
    for path in [*planted, "/etc/passwd", other_output(reliability_data), REPO / "app.py", climbing]:
        answer = endpoint.call(**NORMAL, init_image=file_data(path))
        refused = (answer.event == "error" and "not uploaded by a user" in answer.data and "root:" not in answer.data
                   and all(status < 500 for status in answer.statuses))
        report["hostile"].append(refused)
        assert refused, (path, answer)
    assert len(output_files(reliability_data)) == len(before) + 1  # only the control made an image


def test_a_training_zip_with_a_symlink_member_is_refused(client, tmp_path, report):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        link = zipfile.ZipInfo("passwd.png")
        link.external_attr = 0o120777 << 16  # a symlink member: its data is the target's path
        zipped.writestr(link, "/etc/passwd")
    with pytest.raises(AppError) as refusal:
        client.predict([handle_file(str(archive))], api_name="/train_check")
    report["hostile"].append("root:" not in str(refusal.value))
    assert "root:" not in str(refusal.value)


def cors_grant(answer: httpx.Response) -> str | None:
    return answer.headers.get("access-control-allow-origin")


@pytest.mark.parametrize("origin", [FOREIGN, "null", "http://127.0.0.1.evil.example"])
def test_a_foreign_origin_gets_no_cors_grant(reliability_url, origin, report):
    with httpx.Client(base_url=reliability_url, timeout=30) as http:
        answers = [http.get("gradio_api/info", headers={"Origin": origin}),
                   http.get("config", headers={"Origin": origin}),
                   http.options("gradio_api/queue/join", headers={"Origin": origin,
                                                                  "Access-Control-Request-Method": "POST"})]
        local = http.get("gradio_api/info", headers={"Origin": reliability_url.rstrip("/")})
    assert cors_grant(local) == reliability_url.rstrip("/")  # the app's own origin is granted: the check works
    refused = all(cors_grant(answer) is None for answer in answers)
    report["hostile"].append(refused)
    assert refused, [dict(answer.headers) for answer in answers]


def test_a_cross_site_simple_post_starts_no_job(reliability_url, reliability_data, report):
    """A page on another site can POST text/plain without a preflight; the JSON endpoints must refuse it."""
    before = output_files(reliability_data)
    body = '{"data": ["a red circle"], "fn_index": 0, "session_hash": "crosssite01"}'
    with httpx.Client(base_url=reliability_url, timeout=30) as http:
        answers = [http.post(path, content=body, headers={"Origin": FOREIGN, "Content-Type": "text/plain"})
                   for path in ("gradio_api/queue/join", "gradio_api/call/generate", "gradio_api/run/generate")]
    refused = all(400 <= answer.status_code < 500 for answer in answers) and output_files(reliability_data) == before
    report["hostile"].append(refused)
    assert refused, [(answer.status_code, answer.text[:80]) for answer in answers]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example"])
def test_a_dns_rebinding_host_is_refused(reliability_url, host, report):
    """A page whose domain was rebound to 127.0.0.1 is same-origin to itself; only the Host header tells."""
    with httpx.Client(base_url=reliability_url, timeout=30) as http:
        answer = http.get("gradio_api/info", headers={"Host": host, "Origin": f"http://{host}"})
        assert http.get("gradio_api/info").status_code == 200  # loopback names are served
    refused = answer.status_code == 400 and "named_endpoints" not in answer.text
    report["hostile"].append(refused)
    assert refused, (answer.status_code, answer.text[:80])


def test_the_app_still_serves_after_the_hostile_files(client, served):
    with Image.open(served) as first:  # the server's copy of the first result
        expected = first.convert("RGB").tobytes()
    assert generate(client, **NORMAL).pixels[0].tobytes() == expected
