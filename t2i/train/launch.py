"""The trainer's command line: one process, or several through `accelerate launch` (T2I_TRAIN_PROCESSES).

On CPU `accelerate launch --cpu --num_processes N` starts a single process (accelerate #2741); `--multi_gpu` starts
N processes on gloo when there is no GPU, and one per GPU on NCCL when there are. A config file
(T2I_TRAIN_ACCELERATE_CONFIG, e.g. DeepSpeed ZeRO-2 or FSDP) replaces `--multi_gpu`.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from t2i.settings import Settings

CONFIGS_DIR = Path(__file__).resolve().parent / "accelerate_configs"


def trainer_command(run_dir: Path, lora_dir: Path, settings: Settings) -> list[str]:
    """The argv that trains `run_dir` with settings.train_processes processes."""
    trainer = ["-m", "t2i.train.lora_trainer", str(run_dir), "--lora-dir", str(lora_dir)]
    if settings.train_processes == 1 and not settings.train_accelerate_config:
        return [sys.executable, *trainer]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(settings.train_processes),
              "--num_machines", "1", "--main_process_port", str(free_port()), "--dynamo_backend", "no"]
    if settings.train_accelerate_config:
        launch += ["--config_file", settings.train_accelerate_config]
    else:
        launch += ["--multi_gpu", "--mixed_precision", "no"]  # the trainer's Accelerator picks the precision
    return [*launch, *trainer]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for the processes' rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def trainer_environment(settings: Settings) -> dict[str, str]:
    """The trainer's environment: the processes of one machine talk over loopback (gloo otherwise picks the
    interface of the machine's host name, reachable from the network)."""
    environment = dict(os.environ)
    if settings.train_processes > 1 and sys.platform == "linux":
        environment.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return environment
