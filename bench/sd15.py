"""SD 1.5's architecture (random weights): plain diffusers vs our fast path, per UNet pass and per 20-step image.

CPU: 256x256, 20 steps, CFG 7.5, plain float32 vs T2I_SPEED=fast. GPU: 512x512, 25 steps, plain float16 vs
fast, plus SDXL's UNet at 1024x1024. Per pass: one plain pass, then in a feature cache of interval 2 (the opt-in
`cache=2` switch), one full fast pass and the cached pass that follows it. The `fast` step speedup is
plain / full fast pass; with the cache it is plain / mean(fast steps). The image benchmark (full runs) times
whole pipeline calls with T2I_SPEED=fast, A B A B.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

from t2i.generation.fastpath import apply_fast_path, feature_cache, plan_for

from .common import Options, sync, architecture, interleaved, print_table, sd15_pipeline, write_result

PROMPT = "a photograph of an astronaut riding a horse"
CACHE_INTERVAL = 2  # the opt-in feature cache (T2I_SPEED=...,cache=2), measured beside `fast`


def run(options: Options) -> dict:
    """Measure passes (and images unless quick); write bench/results/sd15.json; return the summary."""
    gpu = options.device.type == "cuda"
    size, steps = (512, 25) if gpu else (256, 20)
    dtype = torch.float16 if gpu else torch.float32
    plain = sd15_pipeline(options.device, dtype)
    plan = plan_for("fast", options.device)
    fast = type(plain)(**{**plain.components, "unet": copy.deepcopy(plain.unet), "vae": copy.deepcopy(plain.vae)},
                       requires_safety_checker=False)
    fast.set_progress_bar_config(disable=True)
    apply_fast_path(fast, plan)
    passes = unet_passes(plain.unet, fast.unet, CACHE_INTERVAL, size // 8, 768, options,
                         reps=options.reps, warmup=0 if options.quick else 1)
    step_speedup = passes["plain_s"] / passes["fast_full_s"]
    cached_speedup = passes["plain_s"] / passes["fast_step_s"]
    result = {"size": size, "steps": steps, "dtype": str(dtype), "fast_path": repr(plan), "unet_passes": passes,
              "step_speedup": step_speedup, "step_speedup_with_cache": cached_speedup}
    rows = [("plain pass", passes["plain_s"]), ("fast full pass", passes["fast_full_s"]),
            ("fast cached pass", passes["fast_cached_s"]), (f"fast + cache={CACHE_INTERVAL} mean step", passes["fast_step_s"]),
            ("step speedup, fast (x)", step_speedup), (f"step speedup, fast + cache={CACHE_INTERVAL} (x)", cached_speedup)]
    summary_key = "sd15_gpu_speedup" if gpu else "sd15_cpu_speedup"
    summary = {summary_key: step_speedup, f"{summary_key}_with_cache": cached_speedup, "sd15_speedup_basis": "unet passes"}
    if not options.quick:
        images = image_runs(plain, fast, plan.cache_interval, size, steps, options.reps)
        result["images"] = images
        rows += [("plain image", images["plain_s"]), ("fast image", images["fast_s"]),
                 ("plain it/s", images["plain_it_s"]), ("fast it/s", images["fast_it_s"]),
                 ("image speedup (x)", images["speedup"])]
        summary.update({summary_key: images["speedup"], "sd15_speedup_basis": f"{steps}-step images"})
    if gpu:
        result["sdxl_unet_passes"] = sdxl_passes(options)
        summary["sdxl_gpu_step_speedup"] = result["sdxl_unet_passes"]["plain_s"] / result["sdxl_unet_passes"]["fast_full_s"]
    print_table(f"SD 1.5 architecture, {size}x{size}, CFG batch of 2, {options.device} (seconds; {plan})", rows)
    write_result("sd15", {"device": str(options.device), **result, "summary": summary},
                 model="SD 1.5 architecture, random weights")
    return summary


def unet_passes(plain_unet, fast_unet, interval: int, latent: int, text_dim: int, options: Options,
                reps: int, warmup: int, added_cond: dict | None = None) -> dict:
    """Median seconds of a plain pass, a full fast pass and a cached fast pass, interleaved round by round."""
    param = next(plain_unet.parameters())
    sample = torch.randn(2, 4, latent, latent, device=param.device, dtype=param.dtype)
    hidden = torch.randn(2, 77, text_dim, device=param.device, dtype=param.dtype)
    extra = {"added_cond_kwargs": added_cond} if added_cond else {}
    timestep = torch.tensor(500, device=param.device)

    def timed(unet) -> float:
        sync()
        start = time.perf_counter()
        unet(sample, timestep, encoder_hidden_states=hidden, **extra)
        sync()
        return time.perf_counter() - start

    times = {"plain": [], "fast_full": [], "fast_cached": []}
    with torch.inference_mode():
        for round_index in range(warmup + reps):
            plain_s = timed(plain_unet)
            with feature_cache(fast_unet, interval):
                full_s = timed(fast_unet)
                cached_s = [timed(fast_unet) for _ in range(interval - 1)]
            if round_index >= warmup:
                times["plain"].append(plain_s)
                times["fast_full"].append(full_s)
                times["fast_cached"] += cached_s or [full_s]
    medians = {f"{name}_s": statistics.median(t) for name, t in times.items()}
    medians["fast_step_s"] = (medians["fast_full_s"] + (interval - 1) * medians["fast_cached_s"]) / interval
    return {**medians, "times_s": times, "interval": interval}


def image_runs(plain, fast, interval: int, size: int, steps: int, reps: int) -> dict:
    """Whole 20/25-step CFG images, plain pipeline vs the fast one (its feature cache on), A B A B."""
    def call(pipe, cached: bool):
        def run():
            with torch.inference_mode(), feature_cache(pipe.unet, interval if cached else 1):
                pipe(PROMPT, height=size, width=size, num_inference_steps=steps, guidance_scale=7.5,
                     generator=torch.Generator("cpu").manual_seed(0), output_type="pil")
        return run

    timings = interleaved({"plain": call(plain, False), "fast": call(fast, True)}, reps=reps)
    plain_s, fast_s = timings["plain"]["median_s"], timings["fast"]["median_s"]
    return {"plain_s": plain_s, "fast_s": fast_s, "plain_it_s": steps / plain_s, "fast_it_s": steps / fast_s,
            "speedup": plain_s / fast_s, "timings": timings}


def sdxl_passes(options: Options) -> dict:
    """SDXL's UNet (2.6B parameters, random weights) at 1024x1024 in float16: plain vs fast, per pass (GPU)."""
    from diffusers import UNet2DConditionModel

    config = architecture("sdxl")["unet"]
    torch.manual_seed(0)
    plain = UNet2DConditionModel(**config).to(options.device, torch.float16)
    fast = copy.deepcopy(plain)
    fast.to(memory_format=torch.channels_last)  # fast on CUDA: channels-last (the model is float16 already)
    added = {"text_embeds": torch.randn(2, 1280, device=options.device, dtype=torch.float16),
             "time_ids": torch.tensor([[1024, 1024, 0, 0, 1024, 1024]] * 2, device=options.device, dtype=torch.float16)}
    passes = unet_passes(plain, fast, CACHE_INTERVAL, 128, 2048, options, reps=options.reps, warmup=1,
                         added_cond=added)
    print_table("SDXL UNet, 1024x1024, CFG batch of 2 (seconds)",
                [(k, v) for k, v in passes.items() if k.endswith("_s")])
    return passes
