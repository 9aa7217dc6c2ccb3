"""The embedded model's training script: resumable after kill -9, clear about bad paths."""

import json
import os
import signal
import subprocess
import sys
import time

from safetensors.torch import load_file

TINY = ["--vae-steps", "3", "--decoder-steps", "2", "--text-steps", "2", "--text-batch", "4", "--low-noise-steps", "2",
        "--n-scenes", "64", "--batch", "4", "--checkpoint-every", "1"]


def train(work, out, *extra, wait=True):
    cmd = [sys.executable, "-m", "t2i.embedded.train", "--work", str(work), "--out", str(out), *TINY, *extra]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    straight = train(tmp_path / "a", tmp_path / "out-a", "--unet-steps", "12")
    assert straight.returncode == 0, straight.stderr

    process = train(tmp_path / "b", tmp_path / "out-b", "--unet-steps", "400", wait=False)
    step_file = tmp_path / "b" / "denoiser_ckpt" / "step.json"
    deadline = time.time() + 300
    while not step_file.exists() and time.time() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = json.loads(step_file.read_text())["step"]
    assert 1 <= killed_at < 12

    resumed = train(tmp_path / "b", tmp_path / "out-b", "--unet-steps", "12")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming denoiser_ckpt from step {killed_at}" in resumed.stdout  # continued, not restarted
    assert json.loads(step_file.read_text())["step"] == 12
    a = load_file(str(tmp_path / "out-a" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "out-b" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(b[k].isfinite().all() for k in b)
