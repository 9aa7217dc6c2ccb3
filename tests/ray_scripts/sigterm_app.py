"""SIGTERM to the app on the Ray backend, run by tests/test_ray_sigterm.py as PID 1 of new network and PID
namespaces (`unshare -n -p -f --mount-proc`): only loopback, and every process the app starts is seen here.

`python sigterm_app.py REPORT.json DATA_DIR` starts `app.py` with T2I_BACKEND=ray, waits until it serves, sends it
SIGTERM, waits for it to exit and for the processes it started to end, and writes to REPORT.json the exit status,
the processes still alive, and the end of the app's log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 600  # a loaded 2-core machine imports torch and starts Ray slowly
EXIT_TIMEOUT_S = 120


def live_processes() -> list[str]:
    """Commands of the processes in this PID namespace that are alive (not zombies), this one left out."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # it ended while being read
        if state != "Z":
            found.append(command)
    return found


def reap() -> None:
    """Collect the exit status of orphans this PID 1 inherited, so they do not stay as zombies."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def main(report_path: Path, data_dir: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "T2I_DATA_DIR": str(data_dir), "T2I_DEVICE": "cpu", "T2I_MODEL": "embedded",
           "T2I_ENTRY_POINT_PLUGINS": "0", "T2I_BACKEND": "ray", "RAY_USAGE_STATS_ENABLED": "0"}
    log_path = data_dir.parent / "app.log"
    with open(log_path, "wb") as log:
        app = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # serving once the port answers: the studio, and with it the Ray engine, exists by then
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if app.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the app did not start (status {app.poll()})")
                time.sleep(0.5)
        started = len(live_processes())
        app.send_signal(signal.SIGTERM)
        status = app.wait(timeout=EXIT_TIMEOUT_S)
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while live_processes() and time.monotonic() < deadline:  # Ray's processes end after the app
            reap()
            time.sleep(0.2)
    report = {"status": status, "processes_while_serving": started, "left": live_processes(),
              "log_tail": log_path.read_text(errors="replace")[-3000:]}
    report_path.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
