"""LoRA training on a quantised base (TrainingConfig.base_quantization), side by side with the full-precision base.

Tiny mode (default): the trainer itself (`t2i.train.lora_trainer.train`, in this process) trains the same run on
tiny Flux.1-dev and SDXL models (t2i/models/tiny, random weights) with each base: `none` and `int8` (and `nf4` where
CUDA and bitsandbytes are), alternating none, int8, none, int8 ... so that a drifting machine load hits all alike.
Per run: the denoiser's weight bytes as it trains (the trainer's `start` event), the median seconds per step over
the steps after the second, the last steps' loss.

`--real`: the frozen base's bytes on the real architectures (SDXL's UNet from bench/configs, 2.57B parameters;
Flux.1-dev's transformer, 11.9B, and its T5-XXL encoder, which the trainer quantises with it): the model is built on
the meta device (no memory), each distinct Linear shape is quantised once for real with the trainer's int8 path
(torchao int8 weight-only) and its bytes measured, then summed over the layers; the layers left alone
(convolutions, norms, embeddings) keep their bytes. nf4 is computed from bitsandbytes' layout (4 bits a weight plus
a float32 absmax per 64-weight block; no double quantisation, diffusers' BitsAndBytesConfig default) and, where
bitsandbytes is installed, also measured the same way as int8: each distinct shape quantised once by bitsandbytes'
own CPU backend (0.50.2 has one; diffusers 0.42.1 refuses to load a model with it on a CPU, so the trainer cannot).
Step times on the real architectures are not measured by this bench (they need a GPU; none was lent when it was
written).

    python -m bench.train_quantised_base [--steps 12] [--reps 2] [--threads 1]
    python -m bench.train_quantised_base --real
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import tempfile
from pathlib import Path

import torch

from .common import architecture, write_result

STEP_FIELDS = {"batch_size": 2, "rank": 4, "alpha": 4.0, "learning_rate": 2e-2, "prior_preservation": False,
               "sample_every": 0, "resolution": 64, "caption_dropout": 0.0, "timestep_bias": "none",
               "min_snr_gamma": 0.0, "train_text_encoder": False, "checkpoint_every": 100_000}
# FLUX.1-dev's transformer: diffusers' FluxTransformer2DModel defaults (19 double and 38 single blocks of 24 heads x
# 128, T5 width 4096, CLIP pooled 768) with dev's guidance embedding (black-forest-labs/FLUX.1-dev config.json)
FLUX_DEV = dict(num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
                joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56))
# FLUX.1-dev's text_encoder_2, T5-XXL's encoder (google/t5-v1_1-xxl: d_model 4096, 24 layers of 64 heads x 64,
# gated-GELU feed-forward 10240); the trainer quantises it with the transformer (t2i/models/memory.py), CLIP not
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              feed_forward_proj="gated-gelu", is_encoder_decoder=False)
NF4_BLOCK = 64  # bitsandbytes' 4-bit block size (one float32 absmax per block)


def _dataset(folder: Path):
    from t2i.embedded.world import SHAPES, Scene, ShapeObject, render
    from t2i.train.dataset import prepare_dataset

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    for index in range(6):
        shape, colour = rng.choice(SHAPES), rng.choice(["red", "yellow", "white", "black"])
        render(Scene((ShapeObject(shape, colour, "large"),), "teal")).save(folder / f"{index}.png")
        (folder / f"{index}.txt").write_text(f"a large {colour} {shape}")
    return prepare_dataset([folder])


def _train_once(scratch: Path, model: Path, family: str, base: str, steps: int, tag: str) -> dict:
    from t2i.train.config import config_from_preset
    from t2i.train.lora_trainer import train

    run = scratch / f"run-{tag}"
    _dataset(scratch / "images").save(run / "dataset")
    config = config_from_preset(name=f"bench-{tag}", trigger="tlq", base_model=str(model), family=family,
                                steps=steps, base_quantization=base, **STEP_FIELDS)
    (run / "config.json").write_text(config.to_json())
    threads = torch.get_num_threads()
    try:
        train(run, scratch / f"loras-{tag}")
    finally:
        torch.set_num_threads(threads)
    events = [json.loads(line) for line in (run / "progress.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["event"] == "start")
    step_events = [e for e in events if e["event"] == "step"]
    return {"base_bytes": start["base_bytes"], "step_s": statistics.median(e["seconds"] for e in step_events[2:]),
            "last_losses": [round(e["loss"], 4) for e in step_events[-3:]]}


def tiny(steps: int, reps: int, threads: int) -> dict:
    """The trainer on tiny Flux.1-dev and SDXL models, each base alternately, `reps` runs each."""
    from t2i.models.tiny import save_tiny_model

    bases = ["none", "int8"]
    if torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes"):
        bases.append("nf4")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        os.environ.update({"T2I_TRAIN_LOCK": str(scratch / "train.lock"), "T2I_TRAIN_THREADS": str(threads)})
        for family in ("flux1", "sdxl"):
            model = save_tiny_model(family, scratch / family, **({"variant": "dev"} if family == "flux1" else {}))
            runs = {base: [] for base in bases}
            for rep in range(reps):
                for base in bases:
                    runs[base].append(_train_once(scratch / family, model, family, base, steps, f"{base}-{rep}"))
            results[family] = {base: {"base_bytes": items[0]["base_bytes"],
                                      "median_step_s": round(statistics.median(r["step_s"] for r in items), 4),
                                      "step_s_per_run": [round(r["step_s"], 4) for r in items],
                                      "last_losses_per_run": [r["last_losses"] for r in items]}
                               for base, items in runs.items()}
            full = results[family]["none"]
            for row in results[family].values():
                row["bytes_vs_none"] = round(row["base_bytes"] / full["base_bytes"], 3)
                row["step_time_vs_none"] = round(row["median_step_s"] / full["median_step_s"], 3)
    return results


def _int8_linear_bytes(shape: tuple[int, int], bias: bool) -> int:
    """Measured: the bytes of one float32 Linear of `shape` after the trainer's int8 path (torchao)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    from t2i.models.memory import resident_bytes

    layer = torch.nn.Linear(shape[1], shape[0], bias=bias)
    quantize_(layer, Int8WeightOnlyConfig())
    return sum(resident_bytes(layer).values())


def _nf4_linear_bytes(shape: tuple[int, int], bias: bool) -> int:
    """Measured: the bytes of one float32 Linear of `shape` quantised by bitsandbytes (on the CPU) as diffusers'
    BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4") quantises it."""
    import bitsandbytes as bnb

    from t2i.models.memory import resident_bytes

    layer = bnb.nn.Linear4bit(shape[1], shape[0], bias=bias, quant_type="nf4", compress_statistics=False)
    layer.weight = bnb.nn.Params4bit(torch.randn(shape), requires_grad=False, quant_type="nf4",
                                     compress_statistics=False)
    return sum(resident_bytes(layer.to("cpu")).values())  # bitsandbytes quantises as the weight moves


def real_bytes(model: torch.nn.Module) -> dict:
    """Bytes of a (meta-device) float32 model's weights: as they are, with its Linear layers int8 (measured per shape)
    and nf4 (bitsandbytes' layout, computed; measured per shape too where bitsandbytes is installed)."""
    full = sum(p.numel() * 4 for p in model.parameters())
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    linear_bytes = sum(m.weight.numel() * 4 + (m.bias.numel() * 4 if m.bias is not None else 0) for m in linears)
    measured: dict[tuple, int] = {}
    int8 = 0
    for layer in linears:
        key = (tuple(layer.weight.shape), layer.bias is not None)
        if key not in measured:
            measured[key] = _int8_linear_bytes(*key)
        int8 += measured[key]
    rest = full - linear_bytes
    nf4 = sum(m.weight.numel() // 2 + 4 * -(-m.weight.numel() // NF4_BLOCK) + (m.bias.numel() * 4 if m.bias is not None
                                                                               else 0) for m in linears)
    parameters = sum(p.numel() for p in model.parameters())
    result = {"parameters": parameters, "linear_share": round(sum(m.weight.numel() for m in linears) / parameters, 4),
              "float32_bytes": full, "bfloat16_bytes": full // 2, "int8_bytes": rest + int8, "nf4_bytes": rest + nf4,
              "distinct_linear_shapes": len(measured)}
    if importlib.util.find_spec("bitsandbytes"):
        nf4_sizes = {key: _nf4_linear_bytes(*key) for key in measured}
        result["nf4_bytes_measured"] = rest + sum(nf4_sizes[(tuple(m.weight.shape), m.bias is not None)]
                                                  for m in linears)
    return result


def real() -> dict:
    """The frozen base's bytes on SDXL's UNet, Flux.1-dev's transformer and its T5-XXL encoder (meta device, int8
    measured per Linear shape)."""
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    with torch.device("meta"):
        models = {"sdxl_unet": UNet2DConditionModel(**architecture("sdxl")["unet"]),
                  "flux1_dev_transformer": FluxTransformer2DModel(**FLUX_DEV),
                  "flux1_t5_xxl_encoder": T5EncoderModel(T5Config(**T5_XXL))}
    return {name: real_bytes(model) for name, model in models.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="the real architectures' base bytes (meta device)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="T2I_TRAIN_THREADS for the tiny runs")
    args = parser.parse_args(argv)
    if args.real:
        from importlib.metadata import PackageNotFoundError, version

        try:
            measured_by = f"bitsandbytes {version('bitsandbytes')} (CPU)"
        except PackageNotFoundError:
            measured_by = None  # nf4 computed only
        result = {"nf4_measured_by": measured_by, "real": real()}
        path = write_result("train_quantised_base_real", result, "SDXL UNet (bench/configs), Flux.1-dev transformer "
                                                                 "and T5-XXL encoder, meta device (no weights)")
    else:
        result = {"steps": args.steps, "reps": args.reps, "threads": args.threads, "tiny": tiny(args.steps, args.reps,
                                                                                              args.threads)}
        path = write_result("train_quantised_base", result, "t2i.models.tiny Flux.1-dev and SDXL, random weights")
    print(json.dumps(result, indent=1))
    print(path)
    return result


if __name__ == "__main__":
    main()
