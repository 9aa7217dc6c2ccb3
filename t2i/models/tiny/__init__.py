"""Tiny random pipelines of every model family t2i runs, built offline and deterministically.

For tests and benchmarks: `build_pipeline(family)` gives a diffusers pipeline on CPU in float32 whose
weights depend only on `seed`; `save_tiny_model` writes it as a diffusers folder, `save_single_file` and
`save_gguf` its denoiser as one file in the layout real downloads use, `save_tiny_lora` a random LoRA for it.
"""

from t2i.models.tiny.files import GGUF_FAMILIES, SINGLE_FILE_FAMILIES, save_gguf, save_single_file
from t2i.models.tiny.lora import save_tiny_lora
from t2i.models.tiny.pipelines import FAMILIES, FAMILY_IDS, build_pipeline, save_tiny_model

__all__ = ["FAMILIES", "FAMILY_IDS", "GGUF_FAMILIES", "SINGLE_FILE_FAMILIES", "build_pipeline", "save_gguf",
           "save_single_file", "save_tiny_lora", "save_tiny_model"]
