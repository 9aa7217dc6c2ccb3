"""tests/app_start.py, which launched-app tests wait on: it returns when the server says it serves, keeps reading its
output afterwards (a server that writes more than a pipe holds does not block), and an app that exits first is an
error carrying its status and last output. Stand-in servers are small Python commands (no app, no port)."""

from __future__ import annotations

import io
import os
import sys

import pytest

from app_start import ServingProcess

MEGABYTE_AFTER_SERVING = r"""
import sys
print("* Running on local URL:  http://127.0.0.1:1", flush=True)
for _ in range(16384):
    sys.stdout.write("x" * 63 + "\n")  # 1 MiB: a pipe holds 64 KiB
sys.stdout.flush()
"""


def test_it_returns_once_serving_and_drains_what_the_server_writes_after():
    log = io.BytesIO()
    server = ServingProcess([sys.executable, "-c", MEGABYTE_AFTER_SERVING], dict(os.environ), log)
    server.wait_until_serving(timeout=120)
    assert server.serving
    server.wait_for_lines(rb"^x{63}$", 16384, timeout=120)  # what it logs after serving can be waited on too
    # it finished writing: a reader that stopped at the serving line would leave it blocked on a full pipe
    assert server.process.wait(timeout=120) == 0
    assert server.output_closed(timeout=120)
    assert log.getvalue().count(b"x" * 63 + b"\n") == 16384


def test_an_app_that_exits_before_serving_is_an_error_with_its_status_and_output():
    server = ServingProcess([sys.executable, "-c", "import sys; print('t2i: bad settings'); sys.exit(3)"],
                            dict(os.environ))
    with pytest.raises(RuntimeError, match=r"exited with status 3; its last output:\nt2i: bad settings"):
        server.wait_until_serving(timeout=120)

