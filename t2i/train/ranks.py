"""What each process of a multi-process training launch needs of its own: its seed, a digest of its weights (to
check the ranks agree), and dying with its launcher."""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import sys

import torch


def rank_seed(seed: int, rank: int) -> int:
    """The seed of a rank's generator: the run's seed on rank 0 (a one-process run is unchanged), a seed mixed
    from both on the others (so that rank 1 of seed 0 is not rank 0 of seed 1)."""
    if rank == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}:{rank}".encode()).digest()[:8], "little")


def weights_digest(weights: dict[str, torch.Tensor]) -> str:
    """sha256 over the LoRA weights' names and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def die_with_launcher() -> None:
    """A rank of a multi-process launch dies with its launcher (Linux): a kill -9 of the launcher (by the
    runner's cancel, the OOM killer or a person) must not leave ranks training, and holding the run's lock."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the launcher died before the line above ran
            sys.exit(1)
