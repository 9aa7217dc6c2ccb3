"""LoRA training steps on the real SDXL UNet and Flux.1-dev transformer (random weights), timed through the trainer.

What one optimizer update of t2i's LoRA trainer costs at 1024², batch 1, on the real architectures: the denoiser is
built from its published configuration with random weights (compute does not depend on the values), the prompt
embeddings and latents are tensors of the shapes the trainer caches (its text encoders are frozen and encoded
once; the VAE encodes once before the loop), and everything else is the trainer's own code: the family's LoRA
targets and objective (`training_for`, `training_loss`), the preset as it trains the family, the optimizer, the
schedule and accelerate's mixed precision (`build_optimizer`, `build_lr_scheduler`, `_accelerator`), the LoRA
set-up and the update (backward, clipping, optimizer and schedule steps: t2i/train/lora_steps.py `add_lora_layers`,
`optimizer_update`), as `lora_trainer._train` calls them.
Each case (architecture x frozen base weights x gradient checkpointing) runs in its own process, so its peak GPU
memory is its own and an out-of-memory or a hang costs only that case; the results file is rewritten after each.

    python -m bench.train_real_arch --fetch-wheels .whl        # here: what the GPU machine's image lacks
    python -m bench.train_real_arch --device cuda --out $OUT/train_real_arch.json   # every case, within --budget
    python -m bench.train_real_arch --device cpu --tiny                             # the same code, tiny configs
    python -m bench.train_real_arch --build-rate                                    # CPU seconds per 1e9 parameters
    python -m bench.train_real_arch --table                                         # BENCHMARKS.md's table

Bases: `float32` is what the trainer loads today (float32 weights, bf16 autocast on a GPU); `bfloat16` keeps the
frozen weights in bf16 and the LoRA in float32 (diffusers' scripts' `cast_training_params`); `int8` quantises the
frozen weights with the generator's torchao int8 weight-only path (t2i/models/memory.py `quantize_pipeline`).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .common import RESULTS_DIR, architecture, machine, model_stamp, write_result

RESULT_NAME = "train_real_arch"
MODEL = "SDXL UNet and Flux.1-dev transformer, random weights"
# FLUX.1-dev's transformer (11.9B parameters): diffusers' FluxTransformer2DModel defaults (its docstring: patch 1,
# 64 input channels, 19 double and 38 single blocks of 24 heads x 128, T5 width 4096, CLIP pooled 768, rope axes
# 16/56/56) with the guidance embedding of dev, as in black-forest-labs/FLUX.1-dev transformer/config.json and
# BFL's flux/util.py "flux-dev" (depth 19, depth_single_blocks 38, hidden 3072, guidance_embed True).
FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))
# FLUX.1-dev scheduler/scheduler_config.json: the shift grows with the image's token count (0.5 at 256 to 1.15 at 4096)
FLUX_DEV_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                          max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
BASES = ("float32", "bfloat16", "int8")
# the cases in the order a device run takes them (it stops starting cases when its time is spent): the trainer's
# default path first, then a bf16 base, then without checkpointing, then int8; Flux float32 without checkpointing
# (47.6 GB of weights plus every block's activations) last, as it is expected to run out of an H100's memory
CASES = (("sdxl", "float32", True), ("flux1-dev", "float32", True), ("sdxl", "bfloat16", True),
         ("flux1-dev", "bfloat16", True), ("sdxl", "float32", False), ("sdxl", "bfloat16", False),
         ("flux1-dev", "bfloat16", False), ("sdxl", "int8", True), ("flux1-dev", "int8", True),
         ("flux1-dev", "float32", False))
# What `import t2i.train.lora_trainer` (and --tiny's t2i.models.tiny) needs beyond the GPU machine's image (its
# package list in /work/.library/device/KINDS.md, read 2026-11-17): carried there as wheels, at the versions
# installed here. Checked by running a case on a Python path holding only the image's packages and these.
DEVICE_WHEELS = ("diffusers", "peft", "torchao", "pydantic", "pydantic-core", "pydantic-settings", "annotated-types",
                 "typing-inspection", "typing-extensions", "python-dotenv", "compel", "dynamicprompts", "spandrel",
                 "gguf")
# the device's Python (3.12) and platforms, as /work/.library/device/README.md gives them for `pip download`
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                   "manylinux1_x86_64")
CASE_TIMEOUT_S = {"sdxl": 100, "flux1-dev": 180}  # a case's own limit: start, import, build, warm-up, timed steps
MIN_CASE_S = 45  # a case is started only with at least this much of the run's time left


@dataclass(frozen=True)
class Architecture:
    """One denoiser to train: its trainer family, diffusers classes, configuration and the tensors' shapes."""

    family: str  # the trainer's family id (t2i/train/family_training.py TRAINABLE_FAMILIES)
    pipeline: str  # the diffusers pipeline class the family's code is handed
    denoiser_class: str
    config: dict
    scheduler_class: str
    scheduler: dict
    text_tokens: int  # the cached prompt embedding's length (CLIP's 77, T5's 512 for dev)
    size: int  # the training image's side, px (latents are size / 8)

    def build(self, device: torch.device) -> torch.nn.Module:
        """The denoiser with random weights (seed 0), initialised on `device` (a GPU fills 12B weights in seconds)."""
        import diffusers

        torch.manual_seed(0)
        with device:
            return getattr(diffusers, self.denoiser_class)(**self.config)


def architectures(tiny: bool) -> dict[str, Architecture]:
    """The real architectures, or (`tiny`) the tiny test pipelines' denoisers with the same code path."""
    if not tiny:
        sdxl = architecture("sdxl")
        euler = {k: v for k, v in sdxl["scheduler"].items() if k != "class"}
        return {"sdxl": Architecture("sdxl", "StableDiffusionXLPipeline", "UNet2DConditionModel", sdxl["unet"],
                                     "EulerDiscreteScheduler", euler, 77, 1024),
                "flux1-dev": Architecture("flux1", "FluxPipeline", "FluxTransformer2DModel", FLUX_DEV,
                                          "FlowMatchEulerDiscreteScheduler", FLUX_DEV_SCHEDULER, 512, 1024)}
    from t2i.models.tiny import build_pipeline

    sdxl, flux = build_pipeline("sdxl"), build_pipeline("flux1", "dev")
    return {"sdxl": Architecture("sdxl", "StableDiffusionXLPipeline", "UNet2DConditionModel", _plain(sdxl.unet),
                                 type(sdxl.scheduler).__name__, _plain(sdxl.scheduler), 77, 64),
            "flux1-dev": Architecture("flux1", "FluxPipeline", "FluxTransformer2DModel", _plain(flux.transformer),
                                      type(flux.scheduler).__name__, _plain(flux.scheduler), 32, 64)}


def _plain(part) -> dict:
    return {k: v for k, v in part.config.items() if not k.startswith("_")}


def _shell_pipeline(arch: Architecture, denoiser: torch.nn.Module):
    """The family's pipeline holding only the denoiser and scheduler: what the family's training code reads from it
    (the scheduler config, the VAE scale of 8 a pipeline assumes without a VAE)."""
    import diffusers

    pipeline_class = getattr(diffusers, arch.pipeline)
    scheduler = getattr(diffusers, arch.scheduler_class)(**arch.scheduler)
    required = [name for name, parameter in inspect.signature(pipeline_class.__init__).parameters.items()
                if name != "self" and parameter.default is inspect.Parameter.empty]
    parts = {name: None for name in required}
    parts.update({"scheduler": scheduler, "unet" if "unet" in required else "transformer": denoiser})
    return pipeline_class(**parts)


def _cached_inputs(arch: Architecture, family, denoiser, device: torch.device):
    """Latents, per-image conditions and prompt embeddings of the shapes the trainer caches (float32, as its
    float32 VAE and text encoders give them), for the prompts "" (caption dropout) and "bench"."""
    from t2i.train.training_data import TrainingData

    generator = torch.Generator().manual_seed(1)
    config = denoiser.config
    side = arch.size // 8
    if arch.family == "flux1":
        channels = config.in_channels // 4  # 2x2 packing

        def embeds():
            return {"prompt_embeds": torch.randn(1, arch.text_tokens, config.joint_attention_dim, generator=generator),
                    "pooled": torch.randn(1, config.pooled_projection_dim, generator=generator),
                    "text_ids": torch.zeros(1, arch.text_tokens, 3)}
    else:
        channels = config.in_channels
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim

        def embeds():
            return {"prompt_embeds": torch.randn(1, arch.text_tokens, config.cross_attention_dim, generator=generator),
                    "pooled": torch.randn(1, pooled, generator=generator)}
    size = (arch.size, arch.size)
    latents = torch.randn(1, channels, side, side, generator=generator).to(device)
    data = TrainingData(latents={size: latents}, members={size: [0]}, prompts=["bench"], class_latents=None,
                        class_prompts=[], conditions={size: family.image_conditions([size], [(0, 0)], size)},
                        class_conditions={})
    cache = {prompt: {k: v.to(device) for k, v in embeds().items()} for prompt in ("", "bench")}

    def embeddings(prompts: list[str]) -> dict[str, torch.Tensor]:
        # the trainer's TextEmbeddings with frozen encoders: each prompt's cached dict, joined along the batch
        return {key: torch.cat([cache[p][key] for p in prompts]) for key in cache[prompts[0]]}
    return data, embeddings


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_case(name: str, base: str, checkpointing: bool, device: torch.device, tiny: bool, warmup: int,
             steps: int, mixed_precision: str | None = None) -> dict:
    """Build one architecture, put the trainer's LoRA on it and time `steps` optimizer updates after `warmup`.
    `mixed_precision` None: the trainer's choice ("auto": bf16 on a GPU, none on a CPU) for a float32 base, bf16
    for the others; "bf16" on a CPU runs a float32 base as a GPU does (bf16 autocast)."""
    from diffusers.training_utils import cast_training_params

    from t2i.models.memory import quantize_pipeline
    from t2i.train.config import DEFAULT_PRESET, preset_config
    from t2i.train.family_training import training_for
    from t2i.train.lora_steps import add_lora_layers, optimizer_update
    from t2i.train.lora_trainer import Trainee, _accelerator, training_loss
    from t2i.train.optimizers import build_lr_scheduler, build_optimizer
    from t2i.train.ranks import rank_seed

    arch = architectures(tiny)[name]
    family = training_for(arch.family)
    # the default preset as it trains this family; batch 1, embeddings cached (text encoders frozen), no class
    # images (prior preservation would add a second denoiser pass per step); a bf16 base needs bf16 autocast
    config = replace(preset_config(DEFAULT_PRESET, arch.family), name="bench", batch_size=1, steps=warmup + steps,
                     train_text_encoder=False, prior_preservation=False, gradient_checkpointing=checkpointing,
                     mixed_precision=mixed_precision or ("auto" if base == "float32" else "bf16"))
    config.validate()
    accelerator = _accelerator(config, device.type)

    started = time.perf_counter()
    denoiser = arch.build(device)
    denoiser.requires_grad_(False)
    pipe = _shell_pipeline(arch, denoiser)
    if base == "bfloat16":
        denoiser.to(torch.bfloat16)
    elif base == "int8":
        quantize_pipeline(pipe, "int8", device)
    _sync(device)
    build_s = time.perf_counter() - started
    parameters = sum(p.numel() for p in denoiser.parameters())
    if device.type == "cuda":  # the peak of training, not of the float32 build a bf16 or int8 base is cast from
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    # 1. the trainer's LoRA layers and optimizer (lora_trainer._train, step 1)
    groups = add_lora_layers(pipe, family, config)
    if base != "float32":  # peft makes the LoRA in the base's dtype; it trains in float32 (same parameter objects)
        cast_training_params(denoiser, dtype=torch.float32)
    trained = [p for group in groups for p in group["params"]]
    if checkpointing:  # the trainer turns it on on a GPU only; the case decides here, so CPU runs cover it too
        denoiser.enable_gradient_checkpointing()
    optimizer = build_optimizer(groups, config, accelerator.device)
    prepared, optimizer = accelerator.prepare(denoiser, optimizer)
    lr_schedule = build_lr_scheduler(optimizer, config, config.steps)
    data, embeddings = _cached_inputs(arch, family, denoiser, device)
    trainee = Trainee(family, prepared, pipe, family.training_scheduler(pipe))
    generator = torch.Generator().manual_seed(rank_seed(config.seed, 0))
    weights_bytes = torch.cuda.memory_allocated() if device.type == "cuda" else None

    # 3. the loop's update (lora_trainer._train, step 3), one micro-batch per update
    prepared.train()
    times, losses = [], []
    for _ in range(warmup + steps):
        _sync(device)
        began = time.perf_counter()
        with accelerator.accumulate(prepared):
            loss = training_loss(trainee, data, embeddings, config, generator)
            optimizer_update(accelerator, loss, trained, optimizer, lr_schedule)
        losses.append(loss.detach().item())  # the trainer reads the loss every step too
        _sync(device)
        times.append(time.perf_counter() - began)
    timed = times[warmup:]
    # peft starts every LoRA B at zero: a norm above zero says the gradients reached the LoRA through checkpointing,
    # autocast and the quantised base
    lora_b_norm = sum(p.detach().float().norm().item() ** 2 for n, p in denoiser.named_parameters()
                      if "lora_B" in n) ** 0.5
    return {"case": case_id(name, base, checkpointing), "architecture": name, "family": arch.family,
            "base": base, "gradient_checkpointing": checkpointing, "mixed_precision": accelerator.mixed_precision,
            "size": arch.size, "batch": 1, "rank": config.rank, "parameters": parameters,
            "trainable_parameters": sum(p.numel() for p in trained), "build_s": build_s,
            "step_s": statistics.median(timed), "times_s": timed, "warmup_steps": warmup,
            "weights_gpu_bytes": weights_bytes,
            "peak_gpu_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
            "peak_gpu_reserved_bytes": torch.cuda.max_memory_reserved() if device.type == "cuda" else None,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "losses": losses, "finite": all(math.isfinite(x) for x in losses), "lora_b_norm": lora_b_norm}


def case_id(name: str, base: str, checkpointing: bool) -> str:
    return f"{name}/{base}/{'checkpointing' if checkpointing else 'no-checkpointing'}"


def _parse_case(text: str) -> tuple[str, str, bool]:
    name, base, checkpointing = text.split("/")
    if base not in BASES or checkpointing not in ("checkpointing", "no-checkpointing"):
        raise SystemExit(f"case {text!r}: NAME/BASE/checkpointing|no-checkpointing, BASE one of {', '.join(BASES)}")
    return name, base, checkpointing == "checkpointing"


def run_all(device: str, tiny: bool, budget_s: float, out: Path, cases=CASES, reps: tuple[int, int] = (2, 6)) -> list:
    """Every case in its own process, in order, while `budget_s` lasts; `out` is rewritten after each case."""
    deadline = time.monotonic() + budget_s
    rows = []
    for name, base, checkpointing in cases:
        left = deadline - time.monotonic()
        case = case_id(name, base, checkpointing)
        if left < MIN_CASE_S:
            rows.append({"case": case, "error": f"not run: {left:.0f} s of the run's time left"})
            write(out, device, tiny, rows)
            continue
        limit = min(CASE_TIMEOUT_S[name], left)
        command = [sys.executable, "-m", "bench.train_real_arch", "--case", case, "--device", device,
                   "--warmup", str(reps[0]), "--steps", str(reps[1])] + (["--tiny"] if tiny else [])
        started = time.monotonic()
        try:
            child = subprocess.run(command, capture_output=True, text=True, timeout=limit,
                                   cwd=Path(__file__).resolve().parent.parent)
            if child.returncode == 0:
                row = json.loads(child.stdout.strip().splitlines()[-1])
            else:
                row = {"case": case, "error": _last_error(child.stderr)}
        except subprocess.TimeoutExpired:
            row = {"case": case, "error": f"timed out after {limit:.0f} s"}
        row["wall_s"] = time.monotonic() - started
        rows.append(row)
        print(f"  {case}: " + (f"{row['step_s']:.3f} s/step" if "step_s" in row else row["error"])
              + f" ({row['wall_s']:.0f} s)", flush=True)
        if len(rows) == 1 and "step_s" not in row:  # the first case (SDXL, fits any GPU) fails for a reason all share
            rows += [{"case": case_id(*rest), "error": "not run: the first case failed"} for rest in cases[1:]]
        write(out, device, tiny, rows)
        if "step_s" not in rows[0]:
            break
    return rows


def _last_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["failed with no message"])[-1][-400:]


def write(out: Path, device: str, tiny: bool, rows: list, **extra) -> Path:
    """The results file: bench/results' layout (benchmark, time, model, machine), with the device and the rows."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if torch.cuda.is_available():
        extra["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    result = {"benchmark": RESULT_NAME, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              **model_stamp(("tiny: " if tiny else "") + MODEL), "machine": machine(), "device": device,
              "tiny": tiny, **extra, "rows": rows}
    out.write_text(json.dumps(result, indent=1) + "\n")
    return out


def build_rate(double_blocks: int = 1, single_blocks: int = 2) -> dict:
    """Seconds per 1e9 parameters to build a cut-down Flux.1-dev transformer on this CPU (float32, random init),
    and the same for casting it to bf16, extrapolated to the full 57-block model; and the full model built on the
    `meta` device: the host's share of building it where the random fill runs on a GPU, as `Architecture.build`
    does (the fill itself writes 47.6 GB at the GPU's memory speed: tens of milliseconds on an H100)."""
    cut = Architecture("flux1", "FluxPipeline", "FluxTransformer2DModel",
                       {**FLUX_DEV, "num_layers": double_blocks, "num_single_layers": single_blocks},
                       "FlowMatchEulerDiscreteScheduler", FLUX_DEV_SCHEDULER, 512, 1024)
    started = time.perf_counter()
    model = cut.build(torch.device("cpu"))
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    model.to(torch.bfloat16)
    cast_s = time.perf_counter() - started
    billions = sum(p.numel() for p in model.parameters()) / 1e9
    started = time.perf_counter()
    full = replace(cut, config=FLUX_DEV).build(torch.device("meta"))  # no memory, no random fill
    meta_s = time.perf_counter() - started
    full_billions = sum(p.numel() for p in full.parameters()) / 1e9
    return {"blocks": [double_blocks, single_blocks], "parameters": billions * 1e9, "build_s": build_s,
            "cast_bf16_s": cast_s, "build_s_per_billion": build_s / billions, "cast_s_per_billion": cast_s / billions,
            "torch_threads": torch.get_num_threads(), "flux_dev_parameters": full_billions * 1e9,
            "flux_dev_cpu_build_s_estimate": (build_s + cast_s) / billions * full_billions,
            "flux_dev_meta_build_s": meta_s}


def fetch_wheels(folder: Path) -> list[Path]:
    """Download DEVICE_WHEELS (the versions installed here) for the GPU machine's Python into `folder`, and keep the
    folder out of git (.git/info/exclude), as the device notes say; returns the wheels."""
    from importlib.metadata import version

    pins = [f"{name}=={version(name)}" for name in DEVICE_WHEELS]
    platforms = [flag for platform in WHEEL_PLATFORMS for flag in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder), *pins],
                   check=True)
    root = Path(__file__).resolve().parent.parent
    exclude = root / ".git" / "info" / "exclude"
    entry = f"/{folder.resolve().relative_to(root)}/"
    if entry not in (exclude.read_text().split() if exclude.exists() else []):
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with exclude.open("a", encoding="utf-8") as handle:
            handle.write(entry + "\n")
    return sorted(folder.glob("*.whl"))


def markdown_table(path: Path = RESULTS_DIR / f"{RESULT_NAME}.json") -> str:
    """BENCHMARKS.md's table from a results file."""
    result = json.loads(path.read_text())
    lines = ["| case | parameters | LoRA | autocast | s/step | peak GPU GiB (reserved) | weights GiB | build s |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        if "step_s" not in row:
            lines.append(f"| {row['case']} | {row['error']} | | | | | | |")
            continue
        gib = {k: f"{row[k] / 2**30:.1f}" if row.get(k) is not None else "-"
               for k in ("peak_gpu_bytes", "peak_gpu_reserved_bytes", "weights_gpu_bytes")}
        lines.append(f"| {row['case']} | {row['parameters'] / 1e6:,.1f}M | {row['trainable_parameters'] / 1e6:.2f}M | "
                     f"{row['mixed_precision']} | {row['step_s']:.3f} | {gib['peak_gpu_bytes']} "
                     f"({gib['peak_gpu_reserved_bytes']}) | {gib['weights_gpu_bytes']} | {row['build_s']:.1f} |")
    info = result["machine"]
    lines.append(f"\nMeasured {result['time'][:10]} on {info.get('gpu', info['cpu'])} ({result['device']}), torch "
                 f"{info['torch']}, diffusers {info['diffusers']}{', tiny configs' if result['tiny'] else ''}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.train_real_arch", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the real run) or cpu (with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="the tiny test configs (seconds on a CPU)")
    parser.add_argument("--budget", type=float, default=420, help="seconds the whole run may take (default 420)")
    parser.add_argument("--out", type=Path, default=None, help=f"results file (default bench/results/"
                                                                f"{RESULT_NAME}.json; tiny_{RESULT_NAME}.json)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps whose median is reported (default 6)")
    parser.add_argument("--case", help="run one case in this process, e.g. sdxl/float32/checkpointing")
    parser.add_argument("--build-rate", action="store_true", help="measure the CPU build rate (results/"
                        f"{RESULT_NAME}_build_rate.json)")
    parser.add_argument("--fetch-wheels", type=Path, metavar="DIR", help="download the wheels the GPU machine "
                        "lacks into DIR (in the repository, e.g. .whl) and exit")
    parser.add_argument("--table", type=Path, nargs="?", const=RESULTS_DIR / f"{RESULT_NAME}.json",
                        help="print the markdown table of a results file")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(args.table))
        return
    if args.fetch_wheels:
        wheels = fetch_wheels(args.fetch_wheels)
        print(f"{len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 2**20:.1f} MiB in {args.fetch_wheels}")
        return
    if args.build_rate:
        rate = build_rate()
        print(json.dumps(rate))
        write_result(f"{RESULT_NAME}_build_rate", {"device": "cpu", **rate}, model="Flux.1-dev transformer, random "
                     "weights: 1 double + 2 single blocks built, the full model on the meta device")
        return
    if args.case:
        name, base, checkpointing = _parse_case(args.case)
        print(json.dumps(run_case(name, base, checkpointing, torch.device(args.device), args.tiny, args.warmup,
                                  args.steps)))
        return
    out = args.out or RESULTS_DIR / f"{'tiny_' if args.tiny else ''}{RESULT_NAME}.json"
    rows = run_all(args.device, args.tiny, args.budget, out, reps=(args.warmup, args.steps))
    print(f"{sum('step_s' in r for r in rows)} of {len(rows)} cases measured; {out}")


if __name__ == "__main__":
    main()
