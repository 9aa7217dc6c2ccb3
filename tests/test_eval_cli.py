"""`python -m t2i eval`: a table, then the numbers as JSON on the last line."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # the CLI in a subprocess


def test_eval_prints_a_table_and_a_json_last_line():
    done = subprocess.run([sys.executable, "-m", "t2i", "eval", "--single", "8", "--pairs", "4", "--speed-runs", "2"],
                          capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "T2I_DEVICE": "cpu"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["n_single"] == 8 and result["n_pairs"] == 4
    for key in ("colour", "background", "shape", "position", "size", "pair_both_right", "clean_pixels"):
        assert 0.0 <= result[key] <= 1.0
        assert any(line.startswith(key) for line in lines)
    assert result["deterministic"] is True and result["background"] >= 0.75
