"""Control-map preprocessors: controlnet_aux detectors by name, as A1111's ControlNet extension names them.

Detectors that need no weights (Canny, lineart-standard, content shuffle) and the plain threshold/none maps
work offline. The others load their weights from the annotators source (a folder or a hub id, setting
T2I_ANNOTATORS) on first use and are kept; when the weights are missing the error says which file and where.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from t2i.request import RequestError


@dataclass(frozen=True)
class Preprocessor:
    """One named preprocessor: the controlnet_aux class, its call options, and the weights file it needs."""

    name: str
    detector: str = ""  # controlnet_aux class name; "" for the maps made here (none, threshold)
    options: dict = field(default_factory=dict)
    weights: str = ""  # file in the annotators source; "" for detectors that need none
    image_resolution: bool = True  # whether the detector takes an output resolution


PREPROCESSORS = {p.name: p for p in (
    Preprocessor("none"),
    Preprocessor("canny", "CannyDetector", {"low_threshold": 100, "high_threshold": 200}),
    Preprocessor("lineart_standard", "LineartStandardDetector", image_resolution=False),
    Preprocessor("shuffle", "ContentShuffleDetector"),
    Preprocessor("threshold"),
    Preprocessor("softedge_hed", "HEDdetector", {"scribble": False}, "ControlNetHED.pth"),
    Preprocessor("scribble_hed", "HEDdetector", {"scribble": True}, "ControlNetHED.pth"),
    Preprocessor("softedge_pidinet", "PidiNetDetector", {"scribble": False}, "table5_pidinet.pth"),
    Preprocessor("scribble_pidinet", "PidiNetDetector", {"scribble": True}, "table5_pidinet.pth"),
    Preprocessor("lineart_realistic", "LineartDetector", {"coarse": False}, "sk_model.pth"),
    Preprocessor("lineart_anime", "LineartAnimeDetector", {}, "netG.pth"),
    Preprocessor("depth_midas", "MidasDetector", {}, "dpt_hybrid-midas-501f0c75.pt"),
    Preprocessor("normal_bae", "NormalBaeDetector", {}, "scannet.pt"),
    Preprocessor("mlsd", "MLSDdetector", {}, "mlsd_large_512_fp32.pth"),
    Preprocessor("openpose", "OpenposeDetector", {"include_body": True, "include_hand": False}, "body_pose_model.pth"),
)}
OFFLINE = tuple(name for name, p in PREPROCESSORS.items() if not p.weights)
_NUMPY_RANDOM = threading.Lock()  # the shuffle detector draws from numpy's global generator


def threshold_map(image: Image.Image) -> Image.Image:
    """A scribble map: the image split at mid-grey, the smaller part (the strokes) white on black."""
    strokes = np.asarray(image.convert("L")) < 128
    if strokes.mean() > 0.5:  # light strokes on a dark ground
        strokes = ~strokes
    return Image.fromarray(np.where(strokes, 255, 0).astype(np.uint8)).convert("RGB")


@contextlib.contextmanager
def _fixed_numpy_seed(seed: int = 0):
    """Seed numpy's global generator for one call and put its state back: same image, same map."""
    with _NUMPY_RANDOM:
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


class Preprocessors:
    """Runs preprocessors by name, loading weighted detectors once from `source` (a folder or hub id)."""

    def __init__(self, source: str):
        self.source = source
        self._detectors: dict[str, object] = {}
        self._lock = threading.Lock()

    def run(self, name: str, image: Image.Image, width: int, height: int) -> Image.Image:
        """The control map of `image` for a width x height generation (RGB, exactly that size)."""
        spec = PREPROCESSORS.get(name)
        if spec is None:
            raise RequestError(f"unknown preprocessor {name!r}; choose one of: {', '.join(PREPROCESSORS)}")
        image = image.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        if name == "none":
            return image
        if name == "threshold":
            return threshold_map(image)
        detector = self._detector(spec)
        sizes = {"detect_resolution": min(width, height)}
        if spec.image_resolution:
            sizes["image_resolution"] = min(width, height)
        with _fixed_numpy_seed():
            result = detector(image, **spec.options, **sizes, output_type="pil").convert("RGB")
        # controlnet_aux rounds sides to multiples of 64; the pipeline needs the request's exact size
        return result if result.size == (width, height) else result.resize((width, height), Image.Resampling.BILINEAR)

    def _detector(self, spec: Preprocessor):
        import controlnet_aux

        with self._lock:
            if spec.name in self._detectors:
                return self._detectors[spec.name]
            cls = getattr(controlnet_aux, spec.detector)
            if not spec.weights:
                detector = cls()
            else:
                try:
                    if Path(self.source).is_dir() and not (Path(self.source) / spec.weights).is_file():
                        raise FileNotFoundError(f"{spec.weights} is not in that folder")
                    detector = cls.from_pretrained(self.source)
                except (OSError, ValueError, RuntimeError, ImportError) as exc:  # offline, missing file or package
                    raise RequestError(
                        f"preprocessor {spec.name!r} needs the weights file {spec.weights!r}, which could not be "
                        f"loaded from {self.source!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                        "put that file in a folder and set T2I_ANNOTATORS to it (or go online), or choose a "
                        f"preprocessor that needs no weights: {', '.join(OFFLINE)}") from exc
            self._detectors[spec.name] = detector
            return detector
