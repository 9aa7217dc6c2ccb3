"""Shared benchmark helpers: interleaved timing, the machine's description, results files, SD-size models."""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
CONFIGS_DIR = BENCH_DIR / "configs"


@dataclass
class Options:
    """What one benchmark run may spend: `quick` is the under-5-minutes set on 2 CPU cores."""

    quick: bool = True
    device: torch.device = field(default_factory=lambda: torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    reps: int = 2  # timed repetitions of each variant, after one warm-up each


def interleaved(variants: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, dict]:
    """Time each variant A B A B ... (so drifting machine load hits all alike); median and all times in seconds."""
    times = {name: [] for name in variants}
    for round_index in range(warmup + reps):
        for name, run in variants.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(t), "times_s": t} for name, t in times.items()}


def sync() -> None:
    """Wait for queued GPU work, so a timer measures it (nothing to do on CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def machine() -> dict:
    """The machine a result came from: CPU, cores, load, memory, accelerator, library versions."""
    import diffusers

    info = {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "torch": torch.__version__, "diffusers": diffusers.__version__,
            "bf16_cpu": _has_flag("avx512_bf16") or _has_flag("amx_bf16")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _has_flag(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return flag in handle.read()
    except OSError:
        return False


def embedded_model_stamp() -> dict:
    """Which embedded model a result was measured on: its hash as the app writes it into recipes ('Model hash')."""
    from t2i.models.cache import _short_hash
    from t2i.models.families import FAMILIES
    from t2i.settings import EMBEDDED_MODEL_DIR

    return {"model": "embedded", "model_hash": _short_hash(EMBEDDED_MODEL_DIR, FAMILIES["sd"])}


def model_stamp(model: str) -> dict:
    """The `model` fields of a result: the embedded model with its hash, or a description (random-weight
    architectures have no hash: their timings do not depend on the weights)."""
    return embedded_model_stamp() if model == "embedded" else {"model": model, "model_hash": None}


def write_result(name: str, result: dict, model: str) -> Path:
    """Save one benchmark's result (with the machine and the model it ran on) as bench/results/<name>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    result = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **model_stamp(model),
              "machine": machine(), **result}
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return path


def print_table(title: str, rows: list[tuple]) -> None:
    """A plain text table: a title line, then one `name  value` row each."""
    print(f"\n{title}")
    width = max(len(str(r[0])) for r in rows) + 2
    for row in rows:
        print(f"  {str(row[0]):<{width}}" + "  ".join(_fmt(v) for v in row[1:]))


def _fmt(value) -> str:
    return f"{value:>10.3f}" if isinstance(value, float) else f"{value!s:>10}"


def architecture(name: str) -> dict:
    """The public architecture configuration (numbers only) of 'sd15' or 'sdxl', shipped in bench/configs."""
    return json.loads((CONFIGS_DIR / f"{name}-architecture.json").read_text())


@functools.lru_cache(maxsize=1)  # built once per run, shared by the SD 1.5-size benchmarks
def sd15_pipeline(device: torch.device, dtype: torch.dtype):
    """A StableDiffusionPipeline of SD 1.5's real architecture with random weights (0.86B-parameter UNet).

    Compute cost does not depend on the weight values. The tokenizer is the embedded model's: every prompt is
    padded to 77 tokens either way, so the text encoder does the same work as with CLIP's own vocabulary.
    """
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from t2i.settings import EMBEDDED_MODEL_DIR

    config = architecture("sd15")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config["unet"])
    vae = AutoencoderKL(**config["vae"])
    text = {k: v for k, v in config["text_encoder"].items() if k != "model"}
    tokenizer = CLIPTokenizer.from_pretrained(EMBEDDED_MODEL_DIR / "tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(**text, bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id))
    scheduler_config = {k: v for k, v in config["scheduler"].items() if k not in ("class", "skip_prk_steps")}
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=EulerDiscreteScheduler(**scheduler_config), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)
