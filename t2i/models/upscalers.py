"""Hires fix upscalers: latent interpolation, Lanczos, and model upscalers (ESRGAN family) read by spandrel.

Model upscalers come from `.safetensors` files only: the header is checked first (t2i/models/file_checks.py), the
tensors are read by safetensors and handed to spandrel as a state dict, so no pickle is ever opened (spandrel's
own file loader would unpickle a .pth). The shipped `shapes-compact-2x` (t2i/embedded/upscalers) is always there.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

from t2i.models.file_checks import read_safetensors_header
from t2i.models.file_library import FileLibrary
from t2i.request import RequestError
from t2i.settings import Settings

EMBEDDED_UPSCALER_DIR = Path(__file__).resolve().parent.parent / "embedded" / "upscalers"
LATENT_MODES = {"Latent": "bilinear", "Latent (nearest)": "nearest"}  # A1111's latent upscalers, no antialiasing
IMAGE_UPSCALERS = ("Lanczos",)
BUILTIN = (*LATENT_MODES, *IMAGE_UPSCALERS)
MAX_BYTES = 1 << 30
KEEP = 2  # model upscalers kept loaded
MAX_PASSES = 4  # a 2x model reaches 16x in four passes; the hires limits stop well before


class UpscalerLibrary:
    """The upscalers a request may name: the built-in ones, the shipped model, then the upscaler folder's files."""

    def __init__(self, settings: Settings):
        shipped = {path.stem: path for path in sorted(EMBEDDED_UPSCALER_DIR.glob("*.safetensors"))}
        self.files = FileLibrary("hires upscaler", settings.upscaler_dir, builtin=shipped, offered=BUILTIN)
        self._loaded: OrderedDict[tuple[str, str], ImageModelDescriptor] = OrderedDict()
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return [*BUILTIN, *self.files.names()]

    def check(self, name: str) -> None:
        """RequestError unless `name` is a built-in upscaler or a model upscaler file that exists."""
        if name not in BUILTIN:
            self.files.path(name)

    def load(self, name: str, device: torch.device) -> ImageModelDescriptor:
        """The model upscaler `name` on `device`, loaded once (the last few kept)."""
        path = self.files.path(name)
        key = (self.files.sha256(path), str(device))
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = _read_model(name, path).to(device).eval()
                while len(self._loaded) > KEEP:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(key)
            return self._loaded[key]

    def upscale(self, image: Image.Image, name: str, size: tuple[int, int], device: torch.device) -> Image.Image:
        """`image` at `size` (width, height) by Lanczos or a model upscaler (run until big enough, then Lanczos)."""
        if name not in IMAGE_UPSCALERS:
            model = self.load(name, device)
            for _ in range(MAX_PASSES):
                if image.width >= size[0] and image.height >= size[1]:
                    break
                image = _run(model, image, device)
        return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def _read_model(name: str, path: Path) -> ImageModelDescriptor:
    read_safetensors_header(path, MAX_BYTES)
    try:
        descriptor = ModelLoader().load_from_state_dict(load_file(str(path)))
    except UnsupportedModelError as exc:
        raise RequestError(f"upscaler {name!r} is not an architecture spandrel knows (ESRGAN, Compact, SwinIR, ...)"
                           ) from exc
    except (KeyError, RuntimeError, ValueError) as exc:
        raise RequestError(f"upscaler {name!r} could not be loaded: {str(exc).splitlines()[0][:200]}") from exc
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.scale < 2 or descriptor.input_channels != 3:
        raise RequestError(f"upscaler {name!r} is not an RGB super-resolution model (scale {descriptor.scale})")
    return descriptor


def _run(model: ImageModelDescriptor, image: Image.Image, device: torch.device) -> Image.Image:
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255)
    with torch.inference_mode():
        out = model(pixels.permute(2, 0, 1)[None].to(device))[0].clamp(0, 1)
    return Image.fromarray((out.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8))
