"""`python -m bench.plots`: draw bench/results/*.json as PNG bar charts beside them (for BENCHMARKS.md)."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from .common import RESULTS_DIR  # noqa: E402


def bars(name: str, title: str, values: dict[str, float], unit: str) -> None:
    """One horizontal bar chart, values written on the bars, saved as bench/results/<name>.png."""
    figure, axes = plt.subplots(figsize=(7, 0.55 * len(values) + 1.2))
    labels, numbers = list(values), list(values.values())
    axes.barh(labels, numbers, color="#4c72b0")
    axes.invert_yaxis()
    for y, number in enumerate(numbers):
        axes.text(number, y, f" {number:.3g}", va="center")
    axes.set_xlabel(unit)
    axes.set_title(title, fontsize=10)
    axes.margins(x=0.2)
    figure.tight_layout()
    figure.savefig(RESULTS_DIR / f"{name}.png", dpi=110)
    plt.close(figure)


def _load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    if result := _load("engine_overhead"):
        bars("engine_overhead", "Embedded model, one 20-step image: time relative to bare diffusers",
             {"bare diffusers": 1.0, **{k.replace("_", " "): v for k, v in result["ratios_to_bare"].items()}}, "x bare")
    if result := _load("sd15"):
        passes = result["unet_passes"]
        values = {"plain pass": passes["plain_s"], "fast full pass": passes["fast_full_s"],
                  "fast cached pass": passes["fast_cached_s"], "fast + cache mean step": passes["fast_step_s"]}
        if "images" in result:
            values.update({"plain image": result["images"]["plain_s"], "fast image": result["images"]["fast_s"]})
        bars("sd15", f"SD 1.5 architecture, {result['size']}px, {result['device']}", values, "seconds (median)")
    if result := _load("vae_decode"):
        bars("vae_decode", f"VAE decode, {result['size']}px, {result['device']}",
             {k.replace("_", " "): v["median_s"] for k, v in result["timings"].items()}, "seconds (median)")
    if result := _load("lora_switch"):
        bars("lora_switch", "LoRA on the SD 1.5 UNet (rank 16)",
             {"switch two resident adapters": result["summary"]["lora_switch_ms"],
              "load one from disk": result["summary"]["lora_load_ms"]}, "milliseconds (median)")
    if result := _load("cold_start"):
        bars("cold_start", "Cold start to the first image (embedded model)",
             {k.replace("_", " "): v for k, v in result["medians"].items() if k.endswith("seconds")}, "seconds")
    print(f"plots written to {RESULTS_DIR}")


if __name__ == "__main__":
    main()
