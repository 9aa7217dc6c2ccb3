"""Fit a loaded pipeline into its device: quantised weights, CPU offloading, and what is really resident where.

`apply_memory_policy(pipe, settings, device)` runs after a model loads (t2i/models/cache.py): it quantises the
denoiser and the large text encoders (`T2I_QUANTIZE`) unless they were quantised while loading, then places
the pipeline (`T2I_OFFLOAD`). `auto` picks from the weights' bytes and the device's free memory
(`choose_policy`). Quantisation goes through the libraries diffusers uses: torchao int8 weight-only (CPU and
CUDA), SDNQ uint4 (CPU and CUDA), bitsandbytes NF4 (CUDA only, while loading: `load_quantization_config`).
Offloading is accelerate's model/sequential CPU offload and diffusers' group offloading, on CUDA only.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass

import torch

from t2i.request import RequestError

QUANTIZE_MODES = ("none", "int8", "int4", "nf4", "auto")
OFFLOAD_MODES = ("none", "model", "sequential", "group", "auto")
DENOISERS = ("unet", "transformer", "transformer_2")
HEADROOM = 0.8  # share of free memory the weights may take; the rest is for activations and the VAE decode
# bytes per weight after quantisation, against 2 (16-bit) or 4 (float32) before
QUANTIZED_BYTES = {"int8": 1.0, "int4": 0.5, "nf4": 0.5}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryPlan:
    """What apply_memory_policy did to a pipeline, and why."""

    quantize: str  # none, int8, int4, nf4 (as applied; "auto" resolved)
    offload: str  # none, model, sequential, group
    reason: str
    quantized: tuple[str, ...] = ()  # components quantised here (not those quantised while loading)


def _tensor_storages(tensor: torch.Tensor):
    """(device, storage pointer, bytes) of the real storages behind a tensor; quantised tensor subclasses
    (torchao) hold theirs in inner tensors, named by `__tensor_flatten__`; bitsandbytes' 4-bit parameters hold their
    packed weights and, beside them in `quant_state`, a scale per block and the code table."""
    if type(tensor) not in (torch.Tensor, torch.nn.Parameter) and hasattr(tensor, "__tensor_flatten__"):
        for name in tensor.__tensor_flatten__()[0]:
            yield from _tensor_storages(getattr(tensor, name))
        return
    if tensor.device.type == "meta":  # offloaded by accelerate: the real copy sits in the hook's weights map
        return
    storage = tensor.untyped_storage()
    yield str(tensor.device), storage.data_ptr(), storage.nbytes()
    state = getattr(tensor, "quant_state", None)  # bitsandbytes Params4bit: nf4 absmax is 1/8 of the packed bytes
    if state is not None:
        nested = [state.state2.absmax, state.state2.code, state.offset] if state.nested else []
        for part in (state.absmax, state.code, *nested):
            yield from _tensor_storages(part)


def _module_tensors(module: torch.nn.Module):
    yield from module.parameters()
    yield from module.buffers()
    for sub in module.modules():  # sequential offload keeps each layer's weights in its accelerate hook
        weights_map = getattr(getattr(sub, "_hf_hook", None), "weights_map", None)
        if weights_map is not None:
            yield from (weights_map[key] for key in weights_map)


def resident_bytes(pipe_or_modules) -> dict[str, int]:
    """Bytes of weights resident on each device ("cpu", "cuda:0", ...) of a pipeline, one module or a list of
    modules, each storage counted once, quantised tensors at their real (packed) size."""
    if isinstance(pipe_or_modules, torch.nn.Module):
        components = [pipe_or_modules]
    elif isinstance(pipe_or_modules, list):
        components = pipe_or_modules
    else:
        components = pipe_or_modules.components.values()
    storages: dict[tuple[str, int], int] = {}
    for component in components:
        if isinstance(component, torch.nn.Module):
            for tensor in _module_tensors(component):
                for device, pointer, nbytes in _tensor_storages(tensor):
                    storages[(device, pointer)] = nbytes
    per_device: dict[str, int] = defaultdict(int)
    for (device, _), nbytes in storages.items():
        per_device[device] += nbytes
    return dict(per_device)


def free_bytes(device: torch.device) -> int | None:
    """Free memory of `device` in bytes (None where it cannot be told)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:  # Linux: what can be had without swapping, page cache included
            with open("/proc/meminfo") as meminfo:
                return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
        except (OSError, StopIteration):
            return None
    return None


def choose_policy(weight_bytes: int, largest_component_bytes: int, bytes_per_weight: float,
                  device: torch.device, free: int | None) -> tuple[str, str, str]:
    """(quantize, offload, reason) for weights of `weight_bytes` on `device` with `free` bytes free: nothing
    while they fit; else int8 (int4 where int8 does not fit and no offloading can help); on CUDA then model
    offload where the largest component fits, group offload where it does not."""
    if free is None:
        return "none", "none", f"free memory of {device} unknown"
    budget = HEADROOM * free
    if weight_bytes <= budget:
        return "none", "none", f"weights {weight_bytes / 2**30:.2f} GiB fit in {free / 2**30:.2f} GiB free"
    shrink = QUANTIZED_BYTES["int8"] / bytes_per_weight
    quantized, largest = weight_bytes * shrink, largest_component_bytes * shrink
    why = f"weights {weight_bytes / 2**30:.2f} GiB, {free / 2**30:.2f} GiB free on {device}"
    if device.type != "cuda":
        return ("int8" if quantized <= budget else "int4"), "none", why
    if quantized <= budget:
        return "int8", "none", why
    return "int8", ("model" if largest <= budget else "group"), why


def _large_components(pipe) -> dict[str, torch.nn.Module]:
    """The denoiser and the text encoders other than CLIP (T5, Qwen, Mistral, ...): what quantising pays for."""
    return {name: module for name, module in pipe.components.items()
            if isinstance(module, torch.nn.Module) and _worth_quantizing(name, type(module).__name__)}


def _worth_quantizing(component: str, class_name: str) -> bool:
    return component in DENOISERS or (component.startswith("text_encoder") and not class_name.startswith("CLIP"))


def _is_quantized(module: torch.nn.Module) -> bool:
    return bool(getattr(module, "is_quantized", False) or getattr(module, "hf_quantizer", None)
                or getattr(module, "quantization_method", None))


def _quantize_module(module: torch.nn.Module, mode: str, device: torch.device) -> None:
    if mode == "int8":
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(module, Int8WeightOnlyConfig())
    elif mode == "int4":
        # SDNQ compiles its kernels with torch.compile by default, which costs ~20 s per model on CPU
        os.environ.setdefault("SDNQ_USE_TORCH_COMPILE", "0" if device.type == "cpu" else "1")
        from sdnq import sdnq_post_load_quant

        sdnq_post_load_quant(module, weights_dtype="uint4", minimum_allowed_numel=1024)
    else:
        raise RequestError("T2I_QUANTIZE=nf4 quantises while loading (bitsandbytes on CUDA); this model was "
                           "loaded without it: use int8 or int4, or load it with load_quantization_config")


def quantize_pipeline(pipe, mode: str, device: torch.device) -> tuple[str, ...]:
    """Quantise the large components not quantised yet (int8 or int4, in place); returns their names."""
    if mode == "nf4":
        _check_nf4(device)
    done = []
    for name, module in _large_components(pipe).items():
        if not _is_quantized(module):
            _quantize_module(module, mode, device)
            done.append(name)
    return tuple(done)


def _check_nf4(device: torch.device) -> None:
    if device.type != "cuda":
        raise RequestError(f"T2I_QUANTIZE=nf4 needs bitsandbytes on a CUDA device; this server runs on {device}: "
                           "use int8 or int4")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise RequestError("T2I_QUANTIZE=nf4 needs bitsandbytes (pip install -r requirements-gpu.txt)") from exc


def load_quantization_config(mode: str, model_index: dict, device: torch.device):
    """A PipelineQuantizationConfig that quantises the large components while `from_pretrained` loads them
    (`model_index`: the folder's model_index.json), or None for `none`."""
    if mode == "none":
        return None
    if mode == "nf4":
        _check_nf4(device)
    import diffusers
    import transformers

    mapping = {}
    for name, entry in model_index.items():
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] in ("diffusers", "transformers")):
            continue
        library, class_name = entry
        if not _worth_quantizing(name, class_name):
            continue
        mapping[name] = _library_config(diffusers if library == "diffusers" else transformers, mode, device)
    return diffusers.PipelineQuantizationConfig(quant_mapping=mapping)


def _library_config(library, mode: str, device: torch.device):
    if mode == "int8":
        from torchao.quantization import Int8WeightOnlyConfig

        return library.TorchAoConfig(Int8WeightOnlyConfig())
    if mode == "int4":
        os.environ.setdefault("SDNQ_USE_TORCH_COMPILE", "0" if device.type == "cpu" else "1")
        from sdnq import SDNQConfig  # the same class serves diffusers and transformers models

        return SDNQConfig(weights_dtype="uint4", minimum_allowed_numel=1024)
    return library.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                      bnb_4bit_compute_dtype=torch.bfloat16)


def offload_pipeline(pipe, mode: str, device: torch.device) -> None:
    """Place the pipeline: all on `device` (none), or offloaded to the CPU between uses (CUDA only)."""
    if mode == "none":
        pipe.to(device)
        return
    if device.type != "cuda":
        raise RequestError(f"T2I_OFFLOAD={mode} needs a CUDA device; this server runs on {device} "
                           "(set T2I_OFFLOAD to none or auto)")
    if mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        from diffusers.hooks import apply_group_offloading

        for module in pipe.components.values():
            if isinstance(module, torch.nn.Module):
                apply_group_offloading(module, onload_device=device, offload_device=torch.device("cpu"),
                                       offload_type="leaf_level", use_stream=True)


def apply_memory_policy(pipe, settings, device: torch.device) -> MemoryPlan:
    """Quantise and place a freshly loaded pipeline as T2I_QUANTIZE and T2I_OFFLOAD say (`auto`: choose_policy)."""
    quantize, offload, reason = settings.quantize, settings.offload, "set by T2I_QUANTIZE / T2I_OFFLOAD"
    if offload != "none" and offload != "auto" and device.type != "cuda":
        raise RequestError(f"T2I_OFFLOAD={offload} needs a CUDA device; this server runs on {device} "
                           "(set T2I_OFFLOAD to none or auto)")
    if "auto" in (quantize, offload):
        sizes = {name: sum(resident_bytes(module).values()) for name, module in pipe.components.items()
                 if isinstance(module, torch.nn.Module)}
        element = next(iter(pipe.components[name] for name in DENOISERS if name in pipe.components), None)
        floats = (p for p in element.parameters() if p.is_floating_point()) if element is not None else iter(())
        bytes_per_weight = next((p.element_size() for p in floats), 2)  # a GGUF denoiser's weights are bytes
        auto_quantize, auto_offload, reason = choose_policy(
            sum(sizes.values()), max(sizes.values(), default=0), bytes_per_weight, device, free_bytes(device))
        quantize = auto_quantize if quantize == "auto" else quantize
        offload = auto_offload if offload == "auto" else offload
    quantized = quantize_pipeline(pipe, quantize, device) if quantize != "none" else ()
    offload_pipeline(pipe, offload, device)
    plan = MemoryPlan(quantize, offload, reason, quantized)
    log.info("memory policy: %s; resident %s", plan, resident_bytes(pipe))
    return plan

