"""Hostile input over plain HTTP and the API: file-route traversal, oversized uploads, a 1 MB prompt, a PNG
header bomb as init image, a pickle named .safetensors as a LoRA, a file input pointing at a loopback URL.
Each is refused clearly; the server keeps serving.
"""

from __future__ import annotations

import http.server
import struct
import threading
import zlib

import httpx
import pytest
import torch
from gradio_client import Client, handle_file

from app_calls import MAX_UPLOAD_MB, generate

pytestmark = pytest.mark.slow  # the real app (reliability suite)

SECRET = "/etc/passwd"
TRAVERSALS = [
    "../../../../../../etc/passwd",
    "..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "%252e%252e%252f%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "..\\..\\..\\..\\..\\..\\etc\\passwd",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "//etc/passwd",
    "file:///etc/passwd",
]
ROUTES = ["gradio_api/file={}", "file={}", "gradio_api/file/{}"]
NORMAL = dict(prompt="a blue triangle on a white background", seed=3, steps=4)


@pytest.fixture(scope="module")
def reference(client):
    return generate(client, **NORMAL)


def still_serving(client, reference) -> None:
    assert generate(client, **NORMAL).same_as(reference)


@pytest.mark.parametrize("route", ROUTES)
def test_file_routes_refuse_paths_outside_the_allowed_folders(reliability_url, route, report):
    with httpx.Client(base_url=reliability_url, timeout=30) as http:
        for attempt in TRAVERSALS:
            # httpx would normalise "../" away; send the raw path as an attacker's client would
            answer = http.get(httpx.URL(reliability_url.rstrip("/") + "/" + route.format(attempt)))
            refused = answer.status_code in (400, 403, 404) and "root:" not in answer.text
            report["hostile"].append(refused)
            assert refused, (route, attempt, answer.status_code, answer.text[:200])


def test_an_upload_over_the_cap_is_refused(reliability_url, client, reference, report):
    big = b"\0" * ((MAX_UPLOAD_MB << 20) + 1024)
    with httpx.Client(base_url=reliability_url, timeout=60) as http:
        answer = http.post("gradio_api/upload", files={"files": ("big.png", big, "image/png")})
    refused = answer.status_code == 413 and "size" in answer.text.lower()
    report["hostile"].append(refused)
    assert refused, (answer.status_code, answer.text[:200])
    still_serving(client, reference)


def test_a_1_mb_prompt_is_refused(client, reference, report):
    with pytest.raises(Exception, match="characters") as refusal:
        generate(client, **{**NORMAL, "prompt": "a red circle " * 80_000})
    report["hostile"].append(refusal is not None)
    still_serving(client, reference)


def png_header_bomb(width: int, height: int) -> bytes:
    """A valid-looking PNG that claims width x height pixels but carries almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + chunk(b"IEND", b""))


def test_a_30000_square_png_header_bomb_as_init_image_is_refused(client, reference, tmp_path, report):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_bomb(30_000, 30_000))
    with pytest.raises(Exception, match="init image is too large") as refusal:
        generate(client, **NORMAL, init_image=handle_file(str(bomb)))
    report["hostile"].append(refusal is not None)
    still_serving(client, reference)


def test_a_pickle_named_safetensors_is_refused_as_a_lora(client, reference, tmp_path, report):
    pickle = tmp_path / "evil.safetensors"
    torch.save({"x": torch.zeros(2)}, pickle)
    with pytest.raises(Exception, match="not a valid safetensors file") as refusal:
        client.predict(handle_file(str(pickle)), "evil", api_name="/lora_upload")
    report["hostile"].append(refusal is not None)
    assert "evil" not in str(client.predict(None, api_name="/lora_refresh"))
    still_serving(client, reference)


@pytest.fixture
def canary():
    """An HTTP listener on loopback that records every request it gets (it should get none)."""
    hits = []

    class Record(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(png_header_bomb(8, 8))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/canary.png", hits
    server.shutdown()


def test_a_file_input_pointing_at_a_loopback_url_is_never_fetched(client, reference, canary, report):
    url, hits = canary
    pointed = {"path": url, "url": url, "orig_name": "canary.png", "meta": {"_type": "gradio.FileData"}}
    with pytest.raises(Exception, match="failed validation"):  # Gradio's check of URLs in file data
        generate(client, **NORMAL, init_image=pointed)
    report["hostile"].append(not hits)
    assert hits == []
    still_serving(client, reference)


@pytest.mark.parametrize("name", ["../loras/tint_a", "..\\loras\\tint_a", "/etc/passwd", "tint_a/../../../etc/passwd",
                                  ".tint_a", "tint_a\0"])
def test_lora_names_cannot_leave_the_library(client, reference, name, report):
    with pytest.raises(Exception, match="unknown LoRA|a LoRA name") as refusal:
        generate(client, **NORMAL, lora_1_enabled=True, lora_1_name=name)
    report["hostile"].append(refusal is not None)
