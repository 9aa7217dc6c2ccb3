"""Per-family rows: quantised against plain weights, side by side in one run.

Tiny (every family, t2i/models/tiny, CPU, 64x64): the bare diffusers pipeline's seconds per denoising step
(median time between step-end callbacks of 8-step runs), its whole 8-step run, and the bytes of weights
resident, for T2I_QUANTIZE none / int8 / int4. Engine overhead: per family, our engine's whole request
(Engine.generate on the tiny model's saved folder: prompt encoding, the family's guidance arguments, recipe, PNG
info; safety plugins off) against the bare diffusers pipeline loaded from the same folder and called with the same
steps, size, seed and guidance, interleaved in one run, as a ratio of medians; the pixel difference says whether
both made the same image.

Real size (`--real`): SDXL's UNet (bench/configs) and an SD3.5-medium-sized transformer with random weights,
one denoiser call per step at 256x256 (batch 2: classifier-free guidance) on CPU, loaded from a saved
folder with quantisation applied while loading, each variant in its own process so its peak RSS is its own.
Writes bench/results/families.json (tiny) and bench/results/families_real.json (real size).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .common import Options, architecture, interleaved, print_table, write_result

MODES = ("none", "int8", "int4")
# SD3.5 medium's MMDiT-X layout (2.24B parameters as built here): 24 blocks of 24 heads x 64, dual attention in 0-12
SD35_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
                   num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                   pooled_projection_dim=2048, pos_embed_max_size=384, qk_norm="rms_norm",
                   dual_attention_layers=tuple(range(13)))


def _tiny_pipeline(family: str, variant: str, mode: str):
    from t2i.models.memory import apply_memory_policy
    from t2i.models.tiny import build_pipeline
    from t2i.settings import Settings

    pipe = build_pipeline(family, variant)
    apply_memory_policy(pipe, Settings(quantize=mode, offload="none"), torch.device("cpu"))
    return pipe


def tiny_rows(options: Options) -> list[dict]:
    """Seconds per step and resident weight bytes of every tiny family, per quantisation mode."""
    from t2i.models.memory import resident_bytes
    from t2i.models.tiny import FAMILIES

    rows = []
    for family, (_, _, variants) in FAMILIES.items():
        for variant in variants:
            pipes = {mode: _tiny_pipeline(family, variant, mode) for mode in MODES}
            intervals = {mode: [] for mode in MODES}

            def generate(mode):
                stamps = []

                def stamp(pipe, step, timestep, tensors):
                    stamps.append(time.perf_counter())
                    return tensors

                def call():
                    stamps.clear()
                    pipes[mode](prompt="a red circle", num_inference_steps=8, height=64, width=64, output_type="np",
                                generator=torch.Generator().manual_seed(0), callback_on_step_end=stamp)
                    intervals[mode].extend(b - a for a, b in zip(stamps, stamps[1:]))
                return call

            timings = interleaved({mode: generate(mode) for mode in MODES}, reps=3 if options.quick else 7)
            for mode, pipe in pipes.items():
                rows.append({"family": family, "variant": variant, "quantize": mode,
                             "eight_steps_s": timings[mode]["median_s"], "step_s": statistics.median(intervals[mode]),
                             "weights_bytes": resident_bytes(pipe)["cpu"]})
    return rows


def overhead_rows(options: Options, steps: int = 8, size: int = 64) -> list[dict]:
    """Engine.generate vs the bare diffusers pipeline on each tiny family's saved folder: medians and their ratio."""
    import numpy as np
    from diffusers import DiffusionPipeline

    from t2i.generation.engine import Engine
    from t2i.models.families import FAMILIES as SPECS
    from t2i.models.tiny import FAMILIES, save_tiny_model
    from t2i.plugins import PluginManager
    from t2i.request import GenerationRequest
    from t2i.settings import Settings

    folder = Path(tempfile.mkdtemp(prefix="t2i-bench-families-"))
    engine = Engine(Settings(device="cpu", dtype="float32", default_model="embedded", entry_point_plugins=False,
                             data_dir=folder / "data", safety_allow_unchecked_images=True, speed="quality"),
                    plugins=PluginManager())
    rows = []
    for family, (_, _, variants) in FAMILIES.items():
        for variant in variants:
            model = save_tiny_model(family, folder / f"{family}{variant}", variant=variant)
            spec = SPECS[family]
            distilled = spec.distilled_cfg if variant != "schnell" else None
            request = GenerationRequest(prompt="a red circle", seed=0, steps=steps, width=size, height=size,
                                        model=str(model), cfg=spec.cfg, sampler=spec.samplers[0],
                                        **({"distilled_cfg": distilled} if distilled is not None else {}))
            guidance = {spec.cfg_arg: spec.cfg} if spec.cfg_arg else {}
            guidance.update({spec.distilled_arg: distilled} if distilled is not None else {})
            guidance.update({spec.token_limit_arg: spec.token_limit} if spec.token_limit_arg else {})
            bare = DiffusionPipeline.from_pretrained(model, use_safetensors=True)
            bare.set_progress_bar_config(disable=True)
            images = {}

            def engine_call():
                images["engine"] = engine.generate(request).images[0].image

            def bare_call():
                with torch.inference_mode():
                    images["bare"] = bare(prompt="a red circle", num_inference_steps=steps, width=size, height=size,
                                          generator=torch.Generator("cpu").manual_seed(0), **guidance).images[0]

            timings = interleaved({"engine": engine_call, "bare": bare_call}, reps=3 if options.quick else 9)
            difference = np.abs(np.asarray(images["engine"], dtype=np.float32)
                                - np.asarray(images["bare"], dtype=np.float32)).mean()
            rows.append({"family": family, "variant": variant, "steps": steps,
                         "engine_s": timings["engine"]["median_s"], "bare_s": timings["bare"]["median_s"],
                         "ratio": timings["engine"]["median_s"] / timings["bare"]["median_s"],
                         "pixel_mae_vs_bare": float(difference), "timings": timings})
    return rows


def _build_denoiser(name: str):
    """SDXL's UNet or the SD3.5-medium-sized transformer, random weights (seed 0)."""
    from diffusers import SD3Transformer2DModel, UNet2DConditionModel

    torch.manual_seed(0)
    if name == "sdxl":
        return UNet2DConditionModel(**architecture("sdxl")["unet"])
    return SD3Transformer2DModel(**SD35_MEDIUM)


def _real_variant(name: str, mode: str, folder: Path, reps: int) -> dict:
    """One variant in this process: load the saved denoiser (quantised while loading), time its steps."""
    from t2i.models.memory import load_quantization_config, resident_bytes

    model_class, inputs = type(_denoiser_shell(name)), _denoiser_inputs(name)
    with torch.device("meta"):  # the parameter count before quantisation packs the weights
        shell = model_class.from_config(model_class.load_config(folder))
    component = "unet" if name == "sdxl" else "transformer"
    config = load_quantization_config(mode, {component: ["diffusers", model_class.__name__]}, torch.device("cpu"))
    started = time.perf_counter()
    # float32 throughout: diffusers' torchao loader would otherwise make the unquantised layers bfloat16
    model = model_class.from_pretrained(folder, torch_dtype=torch.float32,
                                        **({"quantization_config": config.quant_mapping[component]} if config else {}))
    load_s = time.perf_counter() - started
    times = []
    with torch.inference_mode():
        for _ in range(1 + reps):
            started = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - started)
    return {"model": name, "quantize": mode, "load_s": load_s, "step_s": sorted(times[1:])[len(times[1:]) // 2],
            "times_s": times[1:], "weights_bytes": resident_bytes(model)["cpu"],
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "parameters": sum(p.numel() for p in shell.parameters())}


def _denoiser_shell(name: str):
    with torch.device("meta"):  # only its class and config are needed
        return _build_denoiser(name)


def _denoiser_inputs(name: str) -> dict:
    torch.manual_seed(0)
    if name == "sdxl":
        return dict(sample=torch.randn(2, 4, 32, 32), timestep=torch.tensor(500),
                    encoder_hidden_states=torch.randn(2, 77, 2048),
                    added_cond_kwargs={"text_embeds": torch.randn(2, 1280), "time_ids": torch.randn(2, 6)})
    return dict(hidden_states=torch.randn(2, 16, 32, 32), timestep=torch.tensor([500, 500]),
                encoder_hidden_states=torch.randn(2, 333, 4096), pooled_projections=torch.randn(2, 2048))


def real_rows(options: Options, names=("sdxl", "sd35_medium")) -> list[dict]:
    """Each real-size denoiser saved once, then every mode loaded and timed in a fresh process; the results file
    is rewritten after each variant, so a run cut short keeps what it measured."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="t2i-bench-") as scratch:
        for name in names:
            folder = Path(scratch) / name
            model = _build_denoiser(name)
            model.save_pretrained(folder)
            del model
            for mode in MODES:
                child = subprocess.run(
                    [sys.executable, "-m", "bench.families", "--child", name, mode, str(folder),
                     str(1 if options.quick else 3)], capture_output=True, text=True, check=True,
                    cwd=Path(__file__).resolve().parent.parent)
                rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
                print(f"  {name} {mode}: {rows[-1]['step_s']:.2f} s/step, peak RSS "
                      f"{rows[-1]['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
                write_result("families_real", {"device": "cpu", "size": 256, "batch": 2, "rows": rows},
                             model="SDXL UNet and SD3.5-medium-sized transformer, random weights")
    return rows


def run(options: Options, real: bool = False) -> dict:
    """Tiny rows (and real-size rows with `real`); write the results files; return the summary."""
    rows = tiny_rows(options)
    print_table("Tiny families on CPU, 64x64: seconds per step / weights KiB",
                [(f"{r['family']}{'-' + r['variant'] if r['variant'] else ''} {r['quantize']}", r["step_s"],
                  r["weights_bytes"] / 1024) for r in rows])
    overhead = overhead_rows(options)
    print_table("Engine vs bare diffusers, tiny families on CPU, 64x64, 8 steps: engine s, bare s, ratio, pixel MAE",
                [(f"{r['family']}{'-' + r['variant'] if r['variant'] else ''}", r["engine_s"], r["bare_s"], r["ratio"],
                  r["pixel_mae_vs_bare"]) for r in overhead])
    write_result("families", {"device": "cpu", "size": 64, "rows": rows, "overhead_rows": overhead},
                 model="tiny random pipelines of every family (t2i/models/tiny, seed 0)")
    summary = {"families_tiny_rows": len(rows), "families_overhead_rows": len(overhead)}
    if real:
        real_results = real_rows(options)
        summary["families_real_rows"] = len(real_results)
    return summary


def markdown_tables() -> str:
    """BENCHMARKS.md's tables, from bench/results/families.json (and families_real.json where it exists)."""
    from .common import RESULTS_DIR

    tiny = json.loads((RESULTS_DIR / "families.json").read_text())
    lines = ["| family | ms/step none | int8 | int4 | 8-step run s none | int8 | int4 | weights KiB none | int8 "
             "| int4 |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows = {(r["family"], r["variant"], r["quantize"]): r for r in tiny["rows"]}
    for family, variant in dict.fromkeys((r["family"], r["variant"]) for r in tiny["rows"]):
        cells = [rows[(family, variant, mode)] for mode in MODES]
        lines.append(f"| {family}{' ' + variant if variant else ''} | "
                     + " | ".join(f"{c['step_s'] * 1000:.1f}" for c in cells) + " | "
                     + " | ".join(f"{c['eight_steps_s']:.2f}" for c in cells) + " | "
                     + " | ".join(f"{c['weights_bytes'] / 1024:.0f}" for c in cells) + " |")
    if "overhead_rows" in tiny:
        lines += ["", "| family | engine s (8 steps) | bare diffusers s | engine / bare | pixel MAE engine vs bare |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['family']}{' ' + r['variant'] if r['variant'] else ''} | {r['engine_s']:.3f} | "
                  f"{r['bare_s']:.3f} | {r['ratio']:.2f} | {r['pixel_mae_vs_bare']:.2f} |"
                  for r in tiny["overhead_rows"]]
    machine = tiny["machine"]
    lines.append(f"\nMeasured {tiny['time'][:10]}, {machine['cpu']}, {machine['cores']} cores, load "
                 f"{machine['load_average'][0]}, torch {machine['torch']}, diffusers {machine['diffusers']}.")
    real_path = RESULTS_DIR / "families_real.json"
    if real_path.exists():
        real = json.loads(real_path.read_text())
        lines += ["", "| denoiser (random weights), 256², batch 2 | quantise | s/step | weights GiB | peak RSS GiB |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['model']} ({r['parameters'] / 1e9:.2f}B) | {r['quantize']} | {r['step_s']:.2f} | "
                  f"{r['weights_bytes'] / 2**30:.2f} | {r['peak_rss_bytes'] / 2**30:.2f} |" for r in real["rows"]]
        machine = real["machine"]
        lines.append(f"\nMeasured {real['time'][:10]}, {machine['cpu']}, {machine['cores']} cores, load "
                     f"{machine['load_average'][0]}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.families", description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="also the real-size denoisers (minutes, ~12 GB RAM)")
    parser.add_argument("--full", action="store_true", help="more repetitions")
    parser.add_argument("--table", action="store_true", help="print BENCHMARKS.md's tables from the results")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "MODE", "FOLDER", "REPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.table:
        print(markdown_tables())
        return
    if args.child:
        name, mode, folder, reps = args.child
        print(json.dumps(_real_variant(name, mode, Path(folder), int(reps))))
        return
    print(json.dumps(run(Options(quick=not args.full, device=torch.device("cpu")), real=args.real)))


if __name__ == "__main__":
    main()
