"""Our engine end to end on the embedded model vs a bare diffusers StableDiffusionPipeline on the same weights.

One 20-step image with CFG 7, Euler, the same seed. Engine variants: safety off (no checker loaded), safety on
(the built-in prompt and image checkers), and the fast path (T2I_SPEED=fast, safety off). Prompt weighting
(compel) is always on in the engine. The overhead is engine time / bare time, medians of interleaved runs.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from .common import Options, interleaved, print_table, write_result

PROMPT = "a small red star in the top left corner on a blue background"
SEED, STEPS, CFG = 7, 20, 7.0


def run(options: Options) -> dict:
    """Time engine and bare pipeline A B A B; write bench/results/engine_overhead.json; return the summary."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from t2i.generation.engine import Engine
    from t2i.plugins import PluginManager
    from t2i.request import GenerationRequest
    from t2i.settings import EMBEDDED_MODEL_DIR, Settings, resolve_dtype

    dtype = resolve_dtype("auto", options.device)
    base = Settings(device=str(options.device), dtype=str(dtype).removeprefix("torch."), default_model="embedded",
                    entry_point_plugins=False, data_dir=Path(tempfile.mkdtemp(prefix="t2i-bench-")), speed="quality")
    unchecked = dataclasses.replace(base, safety_allow_unchecked_images=True)
    engines = {"engine_safety_off": Engine(unchecked, plugins=PluginManager()),
               "engine_safety_on": Engine(base),
               "engine_fast": Engine(dataclasses.replace(unchecked, speed="fast"), plugins=PluginManager())}
    bare = StableDiffusionPipeline.from_pretrained(EMBEDDED_MODEL_DIR, dtype=dtype, use_safetensors=True,
                                                   safety_checker=None, requires_safety_checker=False).to(options.device)
    bare.scheduler = EulerDiscreteScheduler.from_config(bare.scheduler.config)
    bare.set_progress_bar_config(disable=True)
    request = GenerationRequest(prompt=PROMPT, seed=SEED, steps=STEPS, cfg=CFG, sampler="Euler")
    outputs = {}

    def engine_run(name):
        def call():
            outputs[name] = engines[name].generate(request).images[0].image  # None if the safety gate withheld it
        return call

    def bare_run():
        with torch.inference_mode():
            outputs["bare"] = bare(PROMPT, num_inference_steps=STEPS, guidance_scale=CFG,
                                   generator=torch.Generator("cpu").manual_seed(SEED)).images[0]

    variants = {"bare_diffusers": bare_run, **{name: engine_run(name) for name in engines}}
    timings = interleaved(variants, reps=5 if options.quick else 15)
    bare_s = timings["bare_diffusers"]["median_s"]
    ratios = {name: timings[name]["median_s"] / bare_s for name in engines}
    reference = np.asarray(outputs["bare"], dtype=np.float32)
    mae = {name: float(np.abs(np.asarray(outputs[name], dtype=np.float32) - reference).mean()) for name in engines
           if outputs[name] is not None}
    print_table(f"engine vs bare diffusers, embedded model, {STEPS} steps, CFG {CFG} (median s, x bare, MAE vs bare)",
                [(name, timings[name]["median_s"], ratios.get(name, 1.0), mae.get(name, 0.0)) for name in timings])
    summary = {"engine_overhead": ratios["engine_safety_off"], "engine_overhead_safety_on": ratios["engine_safety_on"],
               "engine_fast_vs_bare": ratios["engine_fast"]}
    write_result("engine_overhead", {"device": str(options.device), "steps": STEPS, "cfg": CFG, "timings": timings,
                                     "ratios_to_bare": ratios, "pixel_mae_vs_bare": mae, "summary": summary},
                 model="embedded")
    return summary
