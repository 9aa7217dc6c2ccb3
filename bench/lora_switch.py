"""LoRA on the SD 1.5-size UNet: switching between two resident adapters, loading one from disk, and hot-swapping
under torch.compile (full runs only) to see whether a swap recompiles.

Adapters are rank 16 on the attention projections (to_q, to_k, to_v, to_out.0), random weights, as the LoRA
plugin activates them: `pipe.set_adapters([name], adapter_weights=[w])`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from .common import Options, embedded_model_stamp, print_table, sd15_pipeline, write_result

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def run(options: Options) -> dict:
    """Time switches and loads; write bench/results/lora_switch.json; return the summary."""
    dtype = torch.float16 if options.device.type == "cuda" else torch.float32
    pipe = sd15_pipeline(options.device, dtype)
    folder = Path(tempfile.mkdtemp(prefix="t2i-bench-lora-"))
    add_lora(pipe, "a", 16)
    add_lora(pipe, "b", 16)
    file_a = save_lora(pipe, "a", folder / "a")
    switches = []
    for i in range(10 if options.quick else 50):
        start = time.perf_counter()
        pipe.set_adapters(["a" if i % 2 else "b"], adapter_weights=[0.8])
        switches.append(time.perf_counter() - start)
    loads = []
    for i in range(3 if options.quick else 10):
        start = time.perf_counter()
        pipe.load_lora_weights(folder / "a", adapter_name=f"disk{i}")
        loads.append(time.perf_counter() - start)
        pipe.delete_adapters(f"disk{i}")
    pipe.delete_adapters(["a", "b"])
    result = {"rank": 16, "targets": TARGETS, "switch_ms": [s * 1000 for s in switches],
              "load_ms": [s * 1000 for s in loads], "file_mb": file_a.stat().st_size / 2**20}
    rows = [("switch (ms, median)", statistics.median(result["switch_ms"])),
            ("load from disk (ms, median)", statistics.median(result["load_ms"])),
            ("LoRA file (MB)", result["file_mb"])]
    summary = {"lora_switch_ms": statistics.median(result["switch_ms"]),
               "lora_load_ms": statistics.median(result["load_ms"])}
    if not options.quick:
        result["compile_hotswap"] = compile_hotswap(options)
        rows += [(f"hotswap {k}", v) for k, v in result["compile_hotswap"].items()]
        summary["lora_hotswap_recompiled"] = result["compile_hotswap"]["recompiled"]
    print_table(f"LoRA on the SD 1.5 UNet, {options.device}", rows)
    write_result("lora_switch", {"device": str(options.device), **result, "summary": summary},
                 model="SD 1.5 architecture (UNet), random weights")
    return summary


def add_lora(pipe, name: str, rank: int) -> None:
    """A random rank-`rank` LoRA adapter on the UNet's attention projections."""
    from peft import LoraConfig

    torch.manual_seed(len(name) + rank)
    pipe.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS, init_lora_weights=False),
                          adapter_name=name)


def save_lora(pipe, name: str, folder: Path) -> Path:
    """Write one adapter as a diffusers LoRA file and return its path."""
    from peft.utils import get_peft_model_state_dict

    type(pipe).save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(pipe.unet, adapter_name=name),
                                 safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


def compile_hotswap(options: Options) -> dict:
    """Compile the UNet with an adapter loaded, hot-swap in another of a different rank, and count new graphs.

    On CPU this runs on the embedded model (compiling the 0.86B UNet takes too long on 2 cores), on GPU on SD 1.5.
    """
    from diffusers import StableDiffusionPipeline
    from torch._dynamo.utils import counters

    from t2i.settings import EMBEDDED_MODEL_DIR

    gpu = options.device.type == "cuda"
    if gpu:
        pipe, size = sd15_pipeline(options.device, torch.float16), 512
    else:
        pipe = StableDiffusionPipeline.from_pretrained(EMBEDDED_MODEL_DIR, safety_checker=None,
                                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        size = 64
    folder = Path(tempfile.mkdtemp(prefix="t2i-bench-hotswap-"))
    for name, rank in (("x", 8), ("y", 16)):
        add_lora(pipe, name, rank)
        save_lora(pipe, name, folder / name)
        pipe.delete_adapters(name)
    pipe.enable_lora_hotswap(target_rank=16)
    pipe.load_lora_weights(folder / "x", adapter_name="hot")
    pipe.unet = torch.compile(pipe.unet)

    def image() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            pipe("a red circle", height=size, width=size, num_inference_steps=4,
                 generator=torch.Generator("cpu").manual_seed(0))
        return time.perf_counter() - start

    first_s = image()
    graphs = counters["stats"]["unique_graphs"]
    start = time.perf_counter()
    pipe.load_lora_weights(folder / "y", adapter_name="hot", hotswap=True)
    swap_ms = (time.perf_counter() - start) * 1000
    second_s = image()
    new_graphs = counters["stats"]["unique_graphs"] - graphs
    model = {"model": "SD 1.5 architecture, random weights", "model_hash": None} if gpu else embedded_model_stamp()
    return {**model, "first_image_with_compile_s": first_s, "hotswap_ms": swap_ms,
            "image_after_swap_s": second_s, "new_graphs_after_swap": new_graphs, "recompiled": new_graphs > 0}
