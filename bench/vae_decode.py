"""VAE decode: SD 1.5's full AutoencoderKL decoder vs a tiny decoder (diffusers AutoencoderTiny, TAESD's layout).

Both have random weights: decode cost does not depend on the values. CPU at 256x256, GPU at 512x512. The
embedded model's own VAE decode is timed too; it has no tiny decoder (see BENCHMARKS.md).
"""

from __future__ import annotations

import torch

from .common import Options, interleaved, print_table, sd15_pipeline, write_result


def run(options: Options) -> dict:
    """Time full vs tiny decode A B A B; write bench/results/vae_decode.json; return the summary."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    from t2i.settings import EMBEDDED_MODEL_DIR

    gpu = options.device.type == "cuda"
    size, dtype = (512, torch.float16) if gpu else (256, torch.float32)
    full = sd15_pipeline(options.device, dtype).vae
    torch.manual_seed(0)
    tiny = AutoencoderTiny().to(options.device, dtype)
    embedded = AutoencoderKL.from_pretrained(EMBEDDED_MODEL_DIR / "vae", dtype=dtype).to(options.device)
    latents = torch.randn(1, 4, size // 8, size // 8, device=options.device, dtype=dtype)
    embedded_latents = torch.randn(1, 4, 16, 16, device=options.device, dtype=dtype)

    def decode(vae, z):
        def call():
            with torch.inference_mode():
                vae.decode(z)
        return call

    timings = interleaved({"full_kl": decode(full, latents), "tiny": decode(tiny, latents),
                           "embedded_kl_64px": decode(embedded, embedded_latents)},
                          reps=3 if options.quick else 10)
    speedup = timings["full_kl"]["median_s"] / timings["tiny"]["median_s"]
    print_table(f"VAE decode, {size}x{size}, {options.device} (median seconds)",
                [(name, t["median_s"]) for name, t in timings.items()] + [("tiny speedup (x)", speedup)])
    summary = {"vae_tiny_speedup": speedup}
    write_result("vae_decode", {"device": str(options.device), "size": size, "timings": timings, "summary": summary},
                 model="SD 1.5 architecture's VAE and AutoencoderTiny, random weights")
    return summary
