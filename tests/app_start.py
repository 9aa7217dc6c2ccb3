"""Start the app (or any server) and block until it says it serves: no port polling, no sleeps.

The process writes its stdout and stderr to one pipe. A daemon thread reads it line by line for as long as the
process (or a child that inherited the pipe) keeps it open, so the process never blocks on a full pipe; each line
goes on to an optional log file, and the thread sets an event at the line that says the server is up (Gradio's
"Running on local URL", uvicorn's "Uvicorn running on"; both are written once the socket listens) or when the
pipe closes. The caller waits on that event, with a deadline.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import BinaryIO

SERVING = re.compile(rb"Running on local URL|Uvicorn running on")


class ServingProcess:
    """A started server process and the thread that reads its output."""

    def __init__(self, command: list[str], env: dict[str, str], log: BinaryIO | None = None):
        # unbuffered: Gradio prints its URL with print(), which a pipe would otherwise hold back
        self.process = subprocess.Popen(command, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        self.log = log
        self.lines: list[bytes] = []  # every line so far, for tests that wait on what the app logs
        self.serving = False
        self._settled = threading.Event()  # the serving line came, or the output ended
        self._new_line = threading.Condition()
        self._output_ended = False
        self._reader = threading.Thread(target=self._read, name="app-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()
            if self.log is not None:
                self.log.write(line)
                self.log.flush()
            if not self.serving and SERVING.search(line):
                self.serving = True
                self._settled.set()
        self._settled.set()  # the pipe closed: the process (and every child holding it) is gone
        with self._new_line:
            self._output_ended = True
            self._new_line.notify_all()

    def wait_until_serving(self, timeout: float) -> None:
        """Block until the server says it serves; RuntimeError with its last output when it exits or `timeout`
        seconds pass first."""
        self._settled.wait(timeout)
        if not self.serving:
            if self._settled.is_set():  # its output ended: it exits, or has
                ended = f"exited with status {self.process.wait(timeout=60)}"
            else:
                ended = f"did not serve within {timeout:.0f} s"
            output = b"".join(self.lines[-40:]).decode(errors="replace")
            raise RuntimeError(f"the app {ended}; its last output:\n{output}")

    def count_lines(self, pattern: bytes) -> int:
        """How many lines of its output so far match the regex `pattern`."""
        with self._new_line:
            return sum(1 for line in self.lines if re.search(pattern, line))

    def wait_for_lines(self, pattern: bytes, count: int, timeout: float) -> None:
        """Block until `count` lines of its output match the regex `pattern`; TimeoutError when `timeout` seconds
        pass or the output ends first."""
        regex, seen, scanned = re.compile(pattern), 0, 0

        def enough() -> bool:  # each line is searched once, however often the lines grow
            nonlocal seen, scanned
            seen += sum(1 for line in self.lines[scanned:] if regex.search(line))
            scanned = len(self.lines)
            return seen >= count or self._output_ended

        with self._new_line:
            self._new_line.wait_for(enough, timeout)
            if seen < count:
                raise TimeoutError(f"the app wrote {seen} of {count} lines matching {pattern!r}")

    def output_closed(self, timeout: float) -> bool:
        """Wait until every holder of the output pipe has closed it (all lines read); whether that happened."""
        self._reader.join(timeout)
        return not self._reader.is_alive()


class AppUrl(str):
    """A running app's URL; `.app` is its ServingProcess, for tests that wait on what the app logs."""

    app: ServingProcess


def start_app(app: Path, port: int, env: dict[str, str], log: BinaryIO | None = None,
              timeout: float = 600) -> ServingProcess:
    """`python app.py --port PORT` with `env`, returned once it serves (see ServingProcess.wait_until_serving)."""
    started = ServingProcess([sys.executable, str(app), "--port", str(port)], env, log)
    try:
        started.wait_until_serving(timeout)
    except BaseException:
        started.process.kill()
        started.process.wait()
        raise
    return started


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
