"""`python -m t2i generate`: a PNG with its recipe, or a clear error, a non-zero exit and no file."""

import subprocess
import sys

import pytest
from PIL import Image

from t2i.eval.analyzer import analyze

pytestmark = pytest.mark.slow  # the CLI in subprocesses


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "t2i", *args], capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "T2I_DEVICE": "cpu"}, cwd=cwd)


def test_generate_writes_a_png_with_its_recipe(tmp_path):
    out = tmp_path / "out.png"
    done = cli("generate", "a large blue square on a yellow background", "-o", str(out), "--seed", "3",
               "--sampler", "DPM++ 2M", "--steps", "15", "--cfg", "6.5")
    assert done.returncode == 0, done.stderr
    image = Image.open(out)
    assert "Steps: 15, Sampler: DPM++ 2M, CFG scale: 6.5, Seed: 3, Size: 64x64" in image.info["parameters"]
    assert analyze(image).background == "yellow"


@pytest.mark.parametrize("args, message", [
    (["", "--steps", "5"], "prompt is empty"),
    (["a red ball", "--width", "7"], "width must be"),
    (["a red ball", "--steps", "0"], "steps must be"),
    (["a red ball", "--cfg", "nan"], "cfg"),
    (["a red ball", "--sampler", "Bogus"], "unknown sampler"),
    (["a red ball", "--model", "/nowhere/model.ckpt"], "only .safetensors"),
    (["a red ball", "--style", "No Such Style"], "unknown style"),
    (["a (red ball", "--steps", "2"], "unbalanced"),
])
def test_errors_exit_nonzero_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "out.png"
    done = cli("generate", args[0], "-o", str(out), *args[1:])
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = cli("generate", "a red ball", "-o", str(blocker / "out.png"), "--steps", "2")
    assert done.returncode != 0 and "error:" in done.stderr and "Traceback" not in done.stderr
