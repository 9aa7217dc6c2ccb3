"""A tiny model's denoiser as one file, the way people download the real ones: a .safetensors single file or a
GGUF file (city96's layout: the original key names, 2-D weights quantised, the rest in float32).

Both carry only the denoiser (a transformer), as released single files of these families do; load them
with `<TransformerClass>.from_single_file(path, config=<tiny diffusers folder>, subfolder="transformer")`,
plus `quantization_config=GGUFQuantizationConfig(...)` for GGUF. See `layouts.py` for the families covered.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
from safetensors.torch import save_file

from t2i.models.tiny.pipelines import build_pipeline
from t2i.models.tiny.layouts import LAYOUTS, to_original_layout

SINGLE_FILE_FAMILIES = tuple(LAYOUTS)
# Flux.1 and Chroma GGUFs keep diffusers' names: diffusers cannot read a tiny one in the original layout
# (layouts.py says why) but loads diffusers-named GGUFs without conversion, so the quantiser is still exercised
GGUF_DIFFUSERS_NAMES = ("flux1", "chroma")
GGUF_FAMILIES = SINGLE_FILE_FAMILIES + GGUF_DIFFUSERS_NAMES
# ComfyUI-GGUF's names for the architectures (its loader checks `general.architecture`)
GGUF_ARCHITECTURES = {"sd3": "sd3", "flux2": "flux", "zimage": "lumina2", "qwenimage": "qwen_image", "flux1": "flux",
                      "chroma": "chroma"}
GGUF_TYPES = {"F32": gguf.GGMLQuantizationType.F32, "F16": gguf.GGMLQuantizationType.F16,
              "Q8_0": gguf.GGMLQuantizationType.Q8_0, "Q4_0": gguf.GGMLQuantizationType.Q4_0}


def _original_weights(family: str, variant: str, seed: int) -> dict:
    if family not in SINGLE_FILE_FAMILIES:
        raise ValueError(f"no tiny single file for {family!r}: diffusers 0.42.1 reads tiny ones for "
                         f"{', '.join(SINGLE_FILE_FAMILIES)} (see t2i/models/tiny/layouts.py)")
    return to_original_layout(family, build_pipeline(family, variant, seed).transformer)


def save_single_file(family: str, path: Path, variant: str = "", seed: int = 0) -> Path:
    """Write the tiny `family` denoiser as one .safetensors file in its original key layout; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_original_weights(family, variant, seed), str(path), metadata={"format": "pt"})
    return path


def _gguf_type(name: str, array: np.ndarray, wanted: gguf.GGMLQuantizationType) -> gguf.GGMLQuantizationType:
    """city96's rule: biases, norms and other small tensors stay float32; 2-D weights take the wanted type
    when their rows split into whole quantisation blocks."""
    if array.ndim != 2 or not name.endswith(".weight"):
        return gguf.GGMLQuantizationType.F32
    block_size, _ = gguf.GGML_QUANT_SIZES[wanted]
    return wanted if array.shape[-1] % block_size == 0 else gguf.GGMLQuantizationType.F16


def save_gguf(family: str, path: Path, quant_type: str = "Q8_0", variant: str = "", seed: int = 0) -> Path:
    """Write the tiny `family` denoiser as a GGUF file (F32, F16, Q8_0 or Q4_0 weights); returns the path.

    Original key names for the families in SINGLE_FILE_FAMILIES, diffusers' names for Flux.1 and Chroma."""
    if quant_type not in GGUF_TYPES:
        raise ValueError(f"GGUF type {quant_type!r}; choose one of {', '.join(GGUF_TYPES)}")
    if family in GGUF_DIFFUSERS_NAMES:
        weights = build_pipeline(family, variant, seed).transformer.state_dict()
    else:
        weights = _original_weights(family, variant, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch=GGUF_ARCHITECTURES[family])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, tensor in weights.items():
        array = tensor.float().numpy()
        qtype = _gguf_type(name, array, GGUF_TYPES[quant_type])
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, array)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, array.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
