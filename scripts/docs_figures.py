"""The benchmark figures the docs quote, generated from the result files, each with the model it was measured on.

BENCHMARKS.md, README.md and the embedded model's card quote measured figures between
`<!-- figures: NAME (scripts/docs_figures.py --write) -->` and `<!-- /figures -->`. This script writes those blocks
from bench/results/*.json (what `python -m bench`, `python -m bench.load`, `python bench/safety_latency.py` and
`python -m bench.fidelity`, the saved `python -m t2i eval`, write). `python scripts/docs_figures.py` prints them;
`--write` puts them into the docs. A figure measured on the embedded model says which: the shipped model by its
hash (the recipe's "Model hash", computed by t2i's own function), any other as "an older embedded model" (its
hash stays in the result file). tests/test_docs_figures.py fails when a block differs from what this writes now,
so a retrained model turns its figures into "older" ones until they are measured again.

Over 300 lines because it holds one small function per block (the block's wording beside the numbers it reads);
splitting them would only scatter the docs' sentences.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
DOCS = ("BENCHMARKS.md", "README.md", "t2i/embedded/model/README.md")
BLOCK = re.compile(r"(<!-- figures: (?P<name>[\w-]+) \(scripts/docs_figures\.py --write\) -->\n)(?P<body>.*?)"
                   r"(?=<!-- /figures -->)", re.DOTALL)
# how a figure names the model it was measured on; only the shipped model is named by hash
NAMED_HASH = re.compile(r"embedded model `([0-9a-f]{10})`")
FIDELITY_COLUMNS = (("colour", "object colour"), ("background", "background"), ("shape", "shape"),
                    ("position", "position"), ("size", "size"), ("pair_both_right", "pairs both right"),
                    ("clean_pixels", "clean pixels"))
SPEED_SETTINGS = ("quality", "fast", "cache=2", "channels_last,low_precision,cache=2")


@functools.cache
def shipped_model_hash() -> str:
    """The shipped embedded model's hash, as t2i writes it into every recipe ("Model hash")."""
    from t2i.models.cache import _short_hash
    from t2i.models.families import FAMILIES
    from t2i.settings import EMBEDDED_MODEL_DIR

    return _short_hash(EMBEDDED_MODEL_DIR, FAMILIES["sd"])


def result(name: str) -> dict:
    """One result file of bench/results."""
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def fidelity(speed: str = "quality") -> dict:
    """The saved eval run under one T2I_SPEED setting (bench/results/fidelity.json)."""
    return result("fidelity")["runs"][speed]


def model_named(res: dict) -> str:
    """The model a result was measured on, in the docs' words."""
    if res["model"] != "embedded":
        return res["model"]
    return f"embedded model `{res['model_hash']}`" if res["model_hash"] == shipped_model_hash() \
        else "an older embedded model"


def stamp(res: dict) -> str:
    """When, on which model, on which CPU and under what load a result was measured."""
    date = res["time"][:10] if "time" in res else "date not recorded"
    return f"{date}, {model_named(res)}, {cpu(res)}, load {res['machine']['load_average'][0]:.1f}"


def cpu(res: dict) -> str:
    """The CPU's name without trademark signs ("Intel Xeon", "AMD EPYC")."""
    name = res["machine"]["cpu"].replace("(R)", "").replace("(TM)", "").replace(" Processor", "")
    return " ".join(name.split())


def machines(results: list[dict]) -> str:
    """The machines some results ran on, each once."""
    seen = dict.fromkeys(f"{cpu(r)}, {r['machine']['cores']} cores"
                         f"{' with native bf16' if r['machine']['bf16_cpu'] else ''}"
                         f"{', ' + r['machine']['gpu'] if 'gpu' in r['machine'] else ', no GPU'}; torch "
                         f"{r['machine']['torch']}, diffusers {r['machine']['diffusers']}" for r in results)
    return "; ".join(seen)


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def quick_set() -> str:
    """BENCHMARKS.md: the quick set's headline figures, with their targets."""
    engine, sd15, lora, swap, vae, cold = (result(n) for n in ("engine_overhead", "sd15", "lora_switch",
                                                                "lora_hotswap", "vae_decode", "cold_start"))
    ratios, mae, hot = engine["ratios_to_bare"], engine["pixel_mae_vs_bare"], swap["compile_hotswap"]
    medians, loaded = cold["medians"], result("cold_start_loaded")
    rows = [
        ("engine overhead, safety off (engine / bare diffusers)", f"{ratios['engine_safety_off']:.2f}x "
         f"(pixel MAE {mae['engine_safety_off']:.1f})", "<= 1.05x", ratios["engine_safety_off"] <= 1.05, engine),
        ("same, safety on (prompt word list + NudeNet)", f"{ratios['engine_safety_on']:.2f}x", "reported", None,
         engine),
        ("engine with `T2I_SPEED=fast` / bare", f"{ratios['engine_fast']:.2f}x (pixel MAE {mae['engine_fast']:.2f})",
         "-", None, engine),
        ("SD 1.5 arch., 256², CFG, per step: `fast` / plain fp32", f"{sd15['step_speedup']:.2f}x", ">= 2x",
         sd15["step_speedup"] >= 2, sd15),
        ("same with `cache=2` (opt-in)", f"{sd15['step_speedup_with_cache']:.2f}x", "-", None, sd15),
        ("LoRA switch between two resident adapters (`set_adapters`)", f"{lora['summary']['lora_switch_ms']:.1f} ms",
         "<= 50 ms", lora["summary"]["lora_switch_ms"] <= 50, lora),
        (f"LoRA load from disk ({lora['file_mb']:.0f} MB, rank {lora['rank']})",
         f"{lora['summary']['lora_load_ms'] / 1000:.2f} s", "-", None, lora),
        ("LoRA hot-swap under torch.compile (CPU): swap / new graphs",
         f"{hot['hotswap_ms']:.0f} ms / {hot['new_graphs_after_swap']}", "no recompile", not hot["recompiled"], swap),
        (f"VAE decode {vae['size']}², full KL decoder / AutoencoderTiny", f"{vae['summary']['vae_tiny_speedup']:.0f}x",
         "-", None, vae),
        ("cold start to the first image, app (`python app.py` + API call)", f"{medians['app_seconds']:.1f} s",
         "<= 15 s", medians["app_seconds"] <= 15, cold),
        ("cold start, CLI (`python -m t2i generate`)", f"{medians['cli_seconds']:.1f} s", "-", None, cold),
        ("cold start, app / CLI, on a heavily loaded machine (`cold_start_loaded.json`)",
         f"{loaded['medians']['app_seconds']:.1f} / {loaded['medians']['cli_seconds']:.1f} s", "-", None, loaded),
        ("peak memory, app / CLI", f"{medians['app_peak_rss_mb']:.0f} / {medians['cli_peak_rss_mb']:.0f} MB",
         "<= 1.5 GB", max(medians["app_peak_rss_mb"], medians["cli_peak_rss_mb"]) <= 1536, cold),
    ]
    lines = [f"Machines: {machines([engine, sd15, lora, swap, vae, cold, loaded])}.", "",
             "| figure | value | target | met | measured (date, model, CPU, load average) |", "|---|---|---|---|---|"]
    for figure, value, target, met, res in rows:
        lines.append(f"| {figure} | {value} | {target} | {'-' if met is None else 'yes' if met else 'no'} "
                     f"| {stamp(res)} |")
    passes = sd15["unet_passes"]
    lines += ["", f"SD 1.5 per UNet pass, CFG batch of 2 at {sd15['size']}², median of interleaved rounds: plain "
              f"float32 {passes['plain_s']:.1f} s, `fast` (channels-last + bf16) {passes['fast_full_s']:.1f} s, a "
              f"cached pass {passes['fast_cached_s']:.2f} s ({stamp(sd15)})."]
    return "\n".join(lines)


def fast_path() -> str:
    """BENCHMARKS.md: what each T2I_SPEED switch gains on SD 1.5 and costs on the embedded model."""
    sd15, engine, runs = result("sd15"), result("engine_overhead"), result("fidelity")["runs"]
    passes = sd15["unet_passes"]
    if "cache=2" in runs:
        cache_cost = f"N=2: {largest_loss(runs['quality'], runs['cache=2'])} ({model_named(runs['cache=2'])})"
    else:
        cache_cost = "not measured on this model (`python -m bench.fidelity --speed cache=2`)"
    return "\n".join([
        "| switch | what | speed (SD 1.5, 256², CPU, per step) | cost on the embedded model |", "|---|---|---|---|",
        "| `channels_last` | UNet and VAE weights in NHWC | with bf16: "
        f"{sd15['step_speedup']:.2f}x | none: pixel-identical in tests |",
        "| `low_precision` | UNet in bf16 (CPU with avx512_bf16/AMX), fp16 on CUDA; text encoder, VAE, latents stay "
        f"fp32 | (above) | mean pixel MAE {engine['pixel_mae_vs_bare']['engine_fast']:.2f}/255 "
        f"({model_named(engine)}) |",
        "| `cache=N` | DeepCache-style: deep UNet blocks recomputed every N-th step, on diffusers' "
        f"`HookRegistry`/`ModelHook` | cached step {passes['fast_full_s'] / passes['fast_cached_s']:.1f}x cheaper "
        f"than a full `fast` step; {sd15['step_speedup_with_cache']:.2f}x with `fast` at N={passes['interval']} "
        f"| {cache_cost} |",
        "| SDPA | torch's scaled_dot_product_attention | diffusers' default already (`AttnProcessor2_0`, checked in "
        "tests) | - |",
        "", f"Speeds: {stamp(sd15)}."])


def largest_loss(base: dict, other: dict) -> str:
    """The attribute `other` loses most on against `base` (two saved eval runs), in points and both values."""
    points, key, label = max((100 * (base["results"][key] - other["results"][key]), key, label)
                             for key, label in FIDELITY_COLUMNS)
    if points <= 0:
        return "no loss on any attribute"
    return f"{points:.1f} points of {label} ({pct(base['results'][key])} -> {pct(other['results'][key])})"


def fidelity_speed() -> str:
    """BENCHMARKS.md: the fidelity benchmark under each T2I_SPEED setting."""
    runs = result("fidelity")["runs"]
    lines = ["| T2I_SPEED | " + " | ".join(label for _, label in FIDELITY_COLUMNS) + " | measured |",
             "|---|" + "---|" * (len(FIDELITY_COLUMNS) + 1)]
    for speed in (s for s in SPEED_SETTINGS if s in runs):
        numbers = runs[speed]["results"]
        lines.append(f"| `{speed}` | " + " | ".join(pct(numbers[key]) for key, _ in FIDELITY_COLUMNS)
                     + f" | {stamp(runs[speed])} |")
    quality = runs["quality"]["results"]
    sizes = {(r["results"]["n_single"], r["results"]["n_pairs"], r["results"]["steps"]) for r in runs.values()}
    lines += ["", "Prompts: " + "; ".join(f"{single} single-object and {pairs} two-object, {steps} steps"
                                         for single, pairs, steps in sorted(sizes)) + "."]
    if "fast" in runs:
        worst = max(abs(runs["fast"]["results"][k] - quality[k]) for k, _ in FIDELITY_COLUMNS)
        lines.append(f"`fast` is within {100 * worst:.1f} points of `quality` on every attribute.")
    return "\n".join(lines)


def batching_table() -> str:
    """BENCHMARKS.md: queued requests with batching off and on."""
    res = result("batching")
    rounds = len(res["timings"]["batch_max_1"]["times_s"])
    lines = [f"| T2I_BATCH_MAX | seconds for the queue (median of {rounds} rounds; range) | images/s | vs off |",
             "|---|---|---|---|"]
    for key, label in (("batch_max_1", "1 (off, the default)"),
                       (f"batch_max_{res['batch_max']}", f"{res['batch_max']} (window {res['window_ms']} ms)")):
        timing = res["timings"][key]
        speedup = res["images_per_s"][key] / res["images_per_s"]["batch_max_1"]
        lines.append(f"| {label} | {timing['median_s']:.2f} ({min(timing['times_s']):.2f}-{max(timing['times_s']):.2f})"
                     f" | {res['images_per_s'][key]:.2f} | {speedup:.2f}x |")
    return "\n".join(lines + ["", f"{batched_vs_alone(res)} Measured {stamp(res)}."])


def batched_vs_alone(res: dict) -> str:
    same = res["batched_vs_alone"]
    return (f"Batched vs alone: {same['identical_images']} of {same['images']} images byte-identical; "
            f"{same['pixels_differing']} pixel(s) differ, by at most {same['max_level_difference']} level.")


def ray_serving_table() -> str:
    """BENCHMARKS.md: throughput on Ray Serve with 1 and 2 engine replicas."""
    res = result("ray_serving")
    one, two = res["images_per_s"]
    rounds = len(res["timings"][one]["times_s"])
    lines = [f"| replicas | seconds for {res['requests']} requests (median of {rounds} rounds; range) | images/s | "
             f"vs 1 replica |", "|---|---|---|---|"]
    for key in (one, two):
        timing = res["timings"][key]
        lines.append(f"| {key.split('_')[0]} | {timing['median_s']:.2f} ({min(timing['times_s']):.2f}-"
                     f"{max(timing['times_s']):.2f}) | {res['images_per_s'][key]:.2f} | "
                     f"{res['images_per_s'][key] / res['images_per_s'][one]:.2f}x |")
    same = "byte-identical" if res["summary"]["images_identical"] else "NOT identical"
    return "\n".join(lines + ["", f"Images from 1 and 2 replicas {same}. Measured {stamp(res)} ({machines([res])})."])


def speed_readme() -> str:
    """README, Speed: the headline speedups and the fidelity cost of the switches."""
    sd15, quality = result("sd15"), fidelity("quality")
    runs = result("fidelity")["runs"]
    text = (f"On SD 1.5's architecture at {sd15['size']}² on CPU a denoising step runs {sd15['step_speedup']:.2f}x "
            f"faster with `fast` and {sd15['step_speedup_with_cache']:.2f}x with `cache=2` added ({stamp(sd15)}).")
    if "fast" in runs:
        worst = max(abs(runs["fast"]["results"][k] - quality["results"][k]) for k, _ in FIDELITY_COLUMNS)
        text += (f" On the embedded model's fidelity benchmark `fast` stays within {100 * worst:.1f} points of the "
                 f"plain path on every attribute ({stamp(runs['fast'])})")
        if "cache=2" in runs:
            text += f"; with `cache=2` its largest loss is {largest_loss(quality, runs['cache=2'])} " \
                    f"({stamp(runs['cache=2'])})"
        text += "."
    return text


def batching_readme() -> str:
    """README, Batching: why it is off, and what it gains."""
    res = result("batching")
    return (f"{batched_vs_alone(res)} Measured on the embedded model, {res['requests']} queued requests on "
            f"{res['machine']['torch_threads']} CPU thread(s): {res['summary']['batching_speedup']:.2f}x the images "
            f"per second ({stamp(res)}; `python -m bench.batching`).")


def load_table() -> str:
    """README, Reliability: the long load and soak runs."""
    quiet, shared, soak = result("load"), result("load_shared"), result("soak")
    lines = ["| run | requests | failures | outputs equal to the request run alone | latency / memory | measured |",
             "|---|---|---|---|---|---|"]
    for label, res in ((f"load, {quiet['clients']} clients (`load.json`)", quiet),
                       (f"load, {shared['clients']} clients, shared with trainings and tests (`load_shared.json`)",
                        shared)):
        # a request counts as failed when it errs or its output differs from the same request run alone
        lines.append(f"| {label} | {res['requests']} | {res['failures']} | {res['requests'] - res['failures']} of "
                     f"{res['requests']} | p50 {res['p50_s']:.1f} s, p95 "
                     f"{res['p95_s']:.1f} s, {res['throughput_per_s']:.2f} requests/s | {stamp(res)} |")
    lines.append(f"| soak, {soak['seconds'] / 60:.0f} min at {soak['rate_per_s']}/s (`soak.json`) | {soak['requests']} "
                 f"| {soak['failures']} | - | RSS {soak['rss_after_warmup_mb']:.0f} -> {soak['rss_end_mb']:.0f} MiB "
                 f"after "
                 f"warm-up ({100 * soak['rss_growth_after_warmup']:+.1f}%, target < 5%) | {stamp(soak)} |")
    return "\n".join(lines)


def fidelity_readme() -> str:
    """README, the embedded model: the shipped model's fidelity at the app's defaults."""
    run = fidelity("quality")
    numbers = run["results"]
    missed = [name for name, met in numbers["targets_met"].items() if not met and name != "speed"]
    return (", ".join(f"{label} {pct(numbers[key])}" for key, label in FIDELITY_COLUMNS)
            + f" (both objects drawn {pct(numbers['pair_objects_right'])}, swapped {pct(numbers['pair_reversed'])}): "
            + (f"fidelity targets missed: {', '.join(missed)}" if missed else "every fidelity target met")
            + f"; a 64×64 image in {speed(run)}; {'deterministic' if numbers['deterministic'] else 'NOT deterministic'}. "
            f"Measured {stamp(run)} ({numbers['n_single']} single-object and {numbers['n_pairs']} two-object prompts, "
            f"{numbers['steps']} steps).")


def speed(run: dict, target: bool = True) -> str:
    """The eval's seconds per image, with the threads and load it was timed under (and how it meets its target)."""
    from t2i.eval.benchmark import SPEED_TARGET_S

    numbers = run["results"]
    met = "met" if numbers["targets_met"]["speed"] else "not met under this load"
    timed = (f"{numbers['seconds_per_image']:.2f} s (median of 7 on {run['machine']['torch_threads']} torch "
             f"thread(s) at load average {run['machine']['load_average'][0]:.1f}")
    return f"{timed}; target ≤ {SPEED_TARGET_S} s: {met})" if target else f"{timed})"


def fidelity_card() -> str:
    """The model card: the shipped model's fidelity, metric by metric, against the targets."""
    from t2i.eval.benchmark import SPEED_TARGET_S, TARGETS

    run = fidelity("quality")
    numbers = run["results"]
    rows = [("object colour", "colour"), ("background colour", "background"), ("shape", "shape"),
            ("position", "position"), ("size", "size"), ("two objects both right", "pair_both_right"),
            ("(diagnostic) both objects found, any relation", "pair_objects_right"),
            ("(diagnostic) both found, but swapped", "pair_reversed"),
            ("clean pixels (share within 40 of the named colours)", "clean_pixels")]
    lines = [f"| metric ({numbers['n_single']} single-object, {numbers['n_pairs']} two-object held-out prompts) "
             "| this model | target |", "|---|---|---|"]
    lines += [f"| {label} | {pct(numbers[key])} | {f'≥ {100 * TARGETS[key]:g}%' if key in TARGETS else ''} |"
              for label, key in rows]
    lines += [f"| seconds per 64×64 image, {numbers['steps']} steps | {speed(run, target=False)} | "
              f"≤ {SPEED_TARGET_S} s |",
              f"| same prompt and seed give the same bytes | {'yes' if numbers['deterministic'] else 'no'} | yes |",
              "", f"Measured {stamp(run)} (`bench/results/fidelity.json`, `python -m bench.fidelity`)."]
    return "\n".join(lines)


def safety_latency() -> str:
    """README, Safety: what each checker costs per prompt or image, and what screening adds to a generation."""
    res = result("safety_latency")
    ratios = [row for row in res["results"].values() if "ratio" in row]
    rows = {name: row for name, row in res["results"].items() if "against" not in row}  # this checkout's timings
    checks = [f"{name.replace('_', ' ')} {row['median_ms']:.{1 if row['median_ms'] < 10 else 0}f} ms"
              for name, row in rows.items() if not name.startswith("generation")]
    labels = {"generation, no image checker": "with no image checker",
              "generation, checked output": "with its image checked",
              "generation + previews, checked": f"with its image and previews (every {res['preview_every']} steps) "
                                                "checked"}
    runs = [f"{row['median_ms'] / 1000:.2f} s {labels.get(name, name)}" for name, row in rows.items()
            if name.startswith("generation")]
    count = max(row["n"] for row in rows.values())
    against = [f"{row['check'].replace('_', ' ')} {row['ratio']:.2f}x {row['against']}'s" for row in ratios]
    return (f"Measured (`python bench/safety_latency.py`, medians of up to {count} on {res['torch_threads']} torch "
            f"thread; {stamp(res)}): {', '.join(checks)}. A {res['steps']}-step image takes {', '.join(runs)}."
            + (f" Side by side with another checkout: {', '.join(against)}." if against else ""))


BLOCKS = {"quick-set": quick_set, "fast-path": fast_path, "fidelity-speed": fidelity_speed,
          "batching": batching_table, "speed": speed_readme, "batching-readme": batching_readme,
          "load": load_table, "fidelity": fidelity_readme, "fidelity-card": fidelity_card,
          "safety-latency": safety_latency, "ray-serving": ray_serving_table}


def wrap(block: str) -> str:
    """Prose lines folded at the docs' 120 columns; table rows stay whole."""
    return "\n".join(line if line.startswith("|") or not line else textwrap.fill(line, 120, break_on_hyphens=False)
                     for line in block.split("\n"))


def render(text: str) -> str:
    """`text` with every figures block rewritten from the result files."""
    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise KeyError(f"unknown figures block {name!r}; known: {', '.join(BLOCKS)}")
        return match.group(1) + wrap(BLOCKS[name]()) + "\n"
    return BLOCK.sub(fill, text)


def write() -> list[str]:
    """Rewrite the blocks in every doc; the docs that changed."""
    changed = []
    for doc in DOCS:
        path = ROOT / doc
        text = path.read_text(encoding="utf-8")
        if (new := render(text)) != text:
            path.write_text(new, encoding="utf-8")
            changed.append(doc)
    return changed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update the blocks in " + ", ".join(DOCS))
    if parser.parse_args().write:
        print("updated: " + (", ".join(write()) or "nothing"))
    else:
        print("\n\n".join(f"<!-- figures: {name} -->\n{block()}" for name, block in BLOCKS.items()))
