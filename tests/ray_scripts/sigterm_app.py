"""SIGTERM to the app on the Ray backend, run by tests/test_ray_sigterm.py as PID 1 of new network and PID
namespaces (`unshare -n -p -f --mount-proc`): only loopback, and every process the app starts is seen here.

`python sigterm_app.py REPORT.json DATA_DIR` starts `app.py` with T2I_BACKEND=ray, waits until it says it serves
(tests/app_start.py), sends it SIGTERM, waits for it to exit and for the processes it started to end (blocked on as
their PID 1, no polling), and writes to REPORT.json the exit status, the processes still alive, and the end of the
app's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from app_start import free_port, start_app  # noqa: E402
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


def wait_for_children(timeout: float) -> None:
    """Block until this PID 1 has no children left, collecting each one's exit status (the app's processes become
    its children when their parents end); gives up after `timeout` seconds."""
    def give_up(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(int(timeout))
    try:
        while True:
            os.waitpid(-1, 0)
    except (ChildProcessError, TimeoutError):  # none left, or some still running (the report lists them)
        pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def main(report_path: Path, data_dir: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    env = {**os.environ, "T2I_DATA_DIR": str(data_dir), "T2I_DEVICE": "cpu", "T2I_MODEL": "embedded",
           "T2I_ENTRY_POINT_PLUGINS": "0", "T2I_BACKEND": "ray", "RAY_USAGE_STATS_ENABLED": "0"}
    log_path = data_dir.parent / "app.log"
    with open(log_path, "wb") as log:
        # serving once it says so: the studio, and with it the Ray engine, exists by then
        app = start_app(ROOT / "app.py", free_port(), env, log, timeout=START_TIMEOUT_S)
        started = len(live_processes())
        app.process.send_signal(signal.SIGTERM)
        status = app.process.wait(timeout=EXIT_TIMEOUT_S)
        wait_for_children(EXIT_TIMEOUT_S)  # Ray's processes end after the app
        app.output_closed(EXIT_TIMEOUT_S)  # every line is in the log
    report = {"status": status, "processes_while_serving": started, "left": live_processes(),
              "log_tail": log_path.read_text(errors="replace")[-3000:]}
    report_path.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
