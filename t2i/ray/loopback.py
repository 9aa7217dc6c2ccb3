"""Running a command in a loopback-only network namespace, for Ray tests and benches on a shared machine.

Ray binds some servers to every interface (each Serve replica's gRPC server listens on [::]), so a test cluster
would be reachable from the network. `unshare -n` (root, as in CI) gives the command a namespace whose only
interface is loopback; the namespace, and every Ray process in it, ends with the command.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess

ENVIRONMENT = {"RAY_USAGE_STATS_ENABLED": "0"}  # no usage report attempts (there is no network anyway)


def unavailable_reason() -> str | None:
    """Why commands cannot run in a loopback-only namespace here, or None when they can."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare (util-linux) and ip (iproute2) are needed for a loopback-only network namespace"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -n is not permitted here (it needs root, as in CI): {probe.stderr.strip()}"
    return None


def only_loopback() -> bool:
    """Whether this process's network namespace has no interface but loopback."""
    # asked of the kernel for this namespace (/sys/class/net would show the host's: sysfs is mounted outside)
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def loopback_command(argv: list[str]) -> list[str]:
    """`argv` wrapped to run in a new network namespace with only loopback, brought up first."""
    return ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {shlex.join(argv)}"]


def loopback_environment(**extra: str) -> dict[str, str]:
    """This process's environment with Ray's settings for such a run (and `extra`)."""
    return {**os.environ, **ENVIRONMENT, **extra}
