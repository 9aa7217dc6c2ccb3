"""LoRA training on a quantised base (QLoRA-style): the frozen denoiser's weights quantised, the LoRA in float.

`TrainingConfig.base_quantization` picks how the base is loaded for training:
- `none`: full precision (float32 on CPU; the GPU's mixed precision for the compute);
- `int8`: torchao int8 weight-only, applied after loading (CPU and CUDA);
- `nf4`: bitsandbytes 4-bit NormalFloat, applied while loading (CUDA only; bitsandbytes is the `gpu` extra).
The quantising is the generator's own (t2i/models/memory.py, `T2I_QUANTIZE`'s modes): the denoiser and the large
text encoders other than CLIP (Flux's T5, whose embeddings are cached once); CLIP encoders stay full precision, so
the ones a LoRA trains are never quantised. The LoRA layers come from peft's own dispatch for quantised layers (peft
0.21: `TorchaoLoraLinear` over torchao tensors, `lora.bnb.Linear4bit` over bitsandbytes' `Linear4bit`): the base
weights stay frozen and quantised, the LoRA's A and B train in full precision and export as usual.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import torch

from t2i.models.access import HUB_ID, model_folder_entries
from t2i.models.memory import resident_bytes
from t2i.request import RequestError
from t2i.settings import EMBEDDED_MODEL_DIR, Settings


def check_base_quantization(mode: str, device: torch.device, base_model: str = "embedded",
                            settings: Settings | None = None) -> None:
    """A RequestError, before the model loads, when `mode` cannot quantise `base_model` (nf4: a diffusers folder
    only), cannot run on `device`, or its library is missing."""
    if mode != "nf4":
        return
    form = _not_a_folder(base_model, settings or Settings())
    if form:
        raise RequestError(f"an nf4 base is quantised by bitsandbytes while a diffusers folder loads, and "
                           f"{base_model!r} is {form}: train it with an int8 base (quantised "
                           "after loading, any model form) or none, or from the model's diffusers folder")
    if device.type != "cuda":
        raise RequestError(f"an nf4 base needs bitsandbytes on a CUDA GPU; this run trains on {device.type}: use "
                           "int8 (torchao, CPU and GPU) or none")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RequestError("an nf4 base needs bitsandbytes, which t2i does not install by default "
                           "(pip install -r requirements-gpu.txt); or use int8")


def _not_a_folder(spec: str, settings: Settings) -> str:
    """What a base model spec is when it is not a local diffusers folder ("" when it is one), resolved as the model
    cache resolves it (t2i/models/cache.py)."""
    path = EMBEDDED_MODEL_DIR if spec == "embedded" else model_folder_entries(settings).get(spec) or Path(spec)
    path = path.expanduser()
    if path.is_dir():
        return ""
    if path.suffix == ".gguf":
        return "a GGUF file"
    if path.suffix == ".safetensors" or path.exists():
        return "a single-file checkpoint"
    return "a hub id" if HUB_ID.match(spec) else "not a diffusers folder"


def training_settings(settings, mode: str):
    """The settings the trainer loads its base model with: T2I_QUANTIZE set to `mode` (none: never quantised)."""
    return replace(settings, quantize=mode)


def base_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's weights wherever they are resident, quantised tensors at their packed size."""
    return sum(resident_bytes(module).values())


def device_bytes(pipe, device: torch.device) -> int:
    """Bytes of a pipeline's weights resident on `device` (every index of its type when it names none)."""
    return sum(size for name, size in resident_bytes(pipe).items()
               if torch.device(name).type == device.type and device.index in (None, torch.device(name).index))


def quantised_layers(module: torch.nn.Module) -> int:
    """How many layers under `module` hold quantised weights (torchao tensors or bitsandbytes 4-bit parameters)."""
    count = 0
    for layer in module.modules():
        weight = getattr(layer, "weight", None)
        if weight is None:
            continue
        if type(weight).__module__.startswith(("torchao", "bitsandbytes")):
            count += 1
    return count
