"""The same trained LoRA exported in two processes gives the same tensors and the same metadata, whatever each
process's string hashing does to the order of peft's `target_modules` set. (The files' bytes still differ: safetensors
writes the metadata keys in the order of a Rust hash map, which changes with every save.)"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

EXPORT_SCRIPT = r'''
import sys
from pathlib import Path
import torch
from t2i.train.config import TrainingConfig
from t2i.train.export import export_lora
from peft import LoraConfig

targets = {"to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2"}
adapter = LoraConfig(r=4, lora_alpha=4, target_modules=targets).to_dict()
assert isinstance(adapter["target_modules"], set)
generator = torch.Generator().manual_seed(0)
layers = {"unet": {"down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.randn(4, 8, generator=generator),
                   "down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.randn(8, 4, generator=generator)}}
export_lora(Path(sys.argv[1]), TrainingConfig(name="bytes"), "StableDiffusionPipeline", layers, {"unet": adapter},
            lambda tensors: dict(tensors), {"t2i_family": "sd"}, "card")
'''


def _export_in_a_process(folder: Path, hash_seed: str) -> tuple[dict, dict]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, str(folder)], env=env, check=True, timeout=300)
    with safe_open(folder / "bytes.safetensors", "pt") as handle:
        return handle.metadata(), {key: handle.get_tensor(key) for key in handle.keys()}


@pytest.mark.slow
def test_two_processes_with_different_string_hashing_write_the_same_lora(tmp_path):
    first_metadata, first_tensors = _export_in_a_process(tmp_path / "one", "1")
    second_metadata, second_tensors = _export_in_a_process(tmp_path / "two", "2")
    assert first_metadata == second_metadata
    assert first_tensors.keys() == second_tensors.keys()
    assert all(torch.equal(first_tensors[key], second_tensors[key]) for key in first_tensors)
