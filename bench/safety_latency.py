"""Latency of the safety checks on CPU: each checker per prompt (English everyday prompts, and the ten-language
dev set of tests/safety_dev) and per image, and a whole generation
with and without live previews (every preview is screened too). Prints a table, then JSON on the last line,
and writes bench/results/safety_latency.json.

    python bench/safety_latency.py [--runs 30] [--prompts-only] [--against CHECKOUT]

The prompt check's target is under 20 ms per prompt on 2 cores; the result records the load average, since
other work on a shared machine slows every row. `--against` times another checkout's prompt checker (e.g. a
`git worktree` of an earlier commit) beside this one, prompt by prompt in turn, and adds their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result  # noqa: E402
from t2i.embedded.captions import corpus  # noqa: E402
from t2i.generation.engine import Engine  # noqa: E402
from t2i.plugins import PluginManager  # noqa: E402
from t2i.request import GenerationRequest  # noqa: E402
from t2i.safety.evaluation import read_set  # noqa: E402
from t2i.settings import Settings  # noqa: E402

BENIGN = Path(__file__).resolve().parent.parent / "tests" / "data" / "safety_benign.txt"
MULTILINGUAL = Path(__file__).resolve().parent.parent / "tests" / "safety_dev" / "dev.jsonl"


def interleaved(variants: dict, values) -> dict:
    """Median and 95th-percentile milliseconds of each variant over the values, after one warm-up call;
    the variants run in turn on each value so that drifting machine load hits all alike."""
    times = {name: [] for name in variants}
    for fn in variants.values():
        fn(values[0])  # warm-up
    for value in values:
        for name, fn in variants.items():
            start = time.perf_counter()
            fn(value)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: {"median_ms": round(statistics.median(t), 2), "p95_ms": round(float(np.percentile(t, 95)), 2),
                   "n": len(t)} for name, t in times.items()}


def checker_of(checkout: Path):
    """The prompt checker of another checkout (its plugins/safety_prompt, imported under another name), with its
    default thresholds."""
    folder = checkout / "plugins" / "safety_prompt"
    spec = importlib.util.spec_from_file_location("against_safety_prompt", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = package
    spec.loader.exec_module(package)
    return package.PromptModeration()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--prompts-only", action="store_true", help="time the prompt checks alone (no images)")
    parser.add_argument("--against", type=Path, help="another checkout whose prompt checker is timed beside this one")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = Settings(device="cpu", dtype="float32", entry_point_plugins=False,
                        data_dir=Path(tempfile.mkdtemp(prefix="t2i-bench-")))
    plugins = PluginManager.discover(settings)
    prompts = [line for line in BENIGN.read_text().splitlines() if line and not line.startswith("#")][:args.runs]
    multilingual = [case["prompt"] for case in read_set(MULTILINGUAL)]  # every language, blocked and benign
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(args.runs)]
    large = [image.resize((512, 512)) for image in images]
    rows = {}
    for checker in plugins.of_kind("prompt_check"):
        other = checker_of(args.against) if args.against and checker.name == "prompt_moderation" else None
        for kind, values in (("prompt", prompts), ("ten-language prompt", multilingual)):
            check = f"{checker.name} per {kind}"
            if not other:
                rows.update(interleaved({check: checker.check_prompt}, values))
                continue
            # the other checkout's rows and the ratio name it in "against"
            timed = interleaved({check: checker.check_prompt, f"{check}, {args.against.name}": other.check_prompt},
                                values)
            this, that = timed.values()
            rows[check] = this
            rows[f"{check}, {args.against.name}"] = {**that, "against": args.against.name}
            rows[f"{check}: this / {args.against.name}, medians"] = {
                "check": check, "against": args.against.name, "ratio": round(this["median_ms"] / that["median_ms"], 3)}
    if args.prompts_only:
        finish(rows, settings, steps=None)
        return
    for checker in plugins.of_kind("image_check"):
        rows.update(interleaved({f"{checker.name} per 64x64 image": checker.check_image}, images))
        rows.update(interleaved({f"{checker.name} per 512x512 image": checker.check_image}, large))
    engine = Engine(settings, plugins=plugins)
    unchecked = Engine(dataclasses.replace(settings, safety_allow_unchecked_images=True),
                       plugins=PluginManager(p for p in plugins.plugins.values() if p.kind == "prompt_check"))
    requests = [GenerationRequest(prompt=p, seed=i, steps=20) for i, p in enumerate(corpus(args.runs // 2))]
    rows.update(interleaved({
        "generation, no image checker": unchecked.generate,
        "generation, checked output": engine.generate,
        "generation + previews, checked": lambda r: engine.generate(r, on_progress=lambda event: None),
    }, requests))
    finish(rows, settings, steps=20)


def finish(rows: dict, settings: Settings, steps: int | None) -> None:
    """Print the table and write the result (the machine's load average is in it)."""
    print(f"{'check':<48} {'median ms':>10} {'p95 ms':>10} {'n':>5}")
    for name, row in rows.items():
        if "ratio" in row:
            print(f"{name:<48} {row['ratio']:>10.3f}")
        else:
            print(f"{name:<48} {row['median_ms']:>10.2f} {row['p95_ms']:>10.2f} {row['n']:>5}")
    result = {"device": "cpu", "torch_threads": 1, "preview_every": settings.preview_every, "steps": steps,
              "results": rows}
    write_result("safety_latency" if steps else "safety_latency_prompts", result,
                 model="embedded" if steps else "prompt checks only")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
