"""NudeNet's detector as an image checker, with a documented threshold per detector class.

Defaults flag exposed genitalia and anus at a detection score of 0.35, exposed female breasts and buttocks
at 0.45; covered parts, faces, feet, bellies, armpits and male chests are not flagged (threshold inf).
An operator may set any class's threshold in the policy file: {"thresholds": {"nudenet": {"BELLY_EXPOSED": 0.6}}}.

NudeNet fits every image to its 320x320 input itself, so a small image is enlarged: a 64 px image five times,
into a blur unlike any photo it learned from. There it both misses and invents: on photos of people shrunk to
64 px its face scores fell to 0-0.35, and two of 200 embedded-model images (a dark-centred ring on a brown or
pink background) read as FEMALE_BREAST_EXPOSED at 0.77. An image under SMALL_SIDE px is therefore shown to it
enlarged only twice (Lanczos), centred on a grey 320x320 canvas (the letterbox YOLO detectors are trained with):
faces in those photos then score higher from 32 to 128 px (Grace Hopper at 64 px: 0.69 instead of 0.35; the
astronaut: 0.58 instead of nothing), but for the astronaut at 80 px (0.67 instead of 0.70) and at 24 px (nothing
instead of 0.29, under every threshold), and the 200 images have no detection at all (bench/nudenet_min_size.py).
The thresholds are unchanged.
"""

from __future__ import annotations

import math
import os

import nudenet
import numpy as np
import onnxruntime
from PIL import Image

from t2i.plugins import ImageChecker, Verdict

OFF = math.inf
# images shorter than this on their longer side are shown enlarged twice on a letterbox canvas, not five times
SMALL_SIDE = 160
INPUT_SIDE = 320  # NudeNet's 320n model input
LETTERBOX_GREY = (114, 114, 114)
DEFAULT_THRESHOLDS = {
    "FEMALE_GENITALIA_EXPOSED": 0.35, "MALE_GENITALIA_EXPOSED": 0.35, "ANUS_EXPOSED": 0.35,
    "FEMALE_BREAST_EXPOSED": 0.45, "BUTTOCKS_EXPOSED": 0.45,
    "MALE_BREAST_EXPOSED": OFF, "BELLY_EXPOSED": OFF, "ARMPITS_EXPOSED": OFF, "FEET_EXPOSED": OFF,
    "FEMALE_GENITALIA_COVERED": OFF, "FEMALE_BREAST_COVERED": OFF, "BUTTOCKS_COVERED": OFF, "ANUS_COVERED": OFF,
    "BELLY_COVERED": OFF, "FEET_COVERED": OFF, "ARMPITS_COVERED": OFF, "FACE_FEMALE": OFF, "FACE_MALE": OFF,
}


class NudeNetChecker(ImageChecker):
    """Flags an image when any detected class scores at or above its threshold."""

    name = "nudenet"
    label = "NudeNet"
    default_thresholds = DEFAULT_THRESHOLDS

    def __init__(self, thresholds: dict[str, float] = DEFAULT_THRESHOLDS):
        self.thresholds = dict(thresholds)
        self.detector = nudenet.NudeDetector()
        # one thread: the detector's input is only 320x320, and sampling already keeps every core busy;
        # measured on 2 busy cores: 32 ms per image with one thread, 90-290 ms with onnxruntime's default
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.detector.onnx_session = onnxruntime.InferenceSession(
            os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx"), options,
            providers=["CPUExecutionProvider"])

    def check_image(self, image: Image.Image) -> Verdict:
        """The highest score per detected class, flagged against the class thresholds."""
        # NudeNet converts its input from RGBA to BGR itself
        detections = self.detector.detect(np.asarray(detector_view(image).convert("RGBA")))
        scores: dict[str, float] = {}
        for found in detections:
            scores[found["class"]] = max(scores.get(found["class"], 0.0), round(float(found["score"]), 4))
        over = sorted(c for c, s in scores.items() if s >= self.thresholds.get(c, OFF))
        return Verdict(bool(over), f"detected {', '.join(over)}" if over else "", scores)


def detector_view(image: Image.Image) -> Image.Image:
    """The image as NudeNet should see it: as it is, or, under SMALL_SIDE px, enlarged twice on a grey canvas."""
    image = image.convert("RGB")
    if max(image.size) >= SMALL_SIDE:
        return image
    enlarged = image.resize((image.width * 2, image.height * 2), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (INPUT_SIDE, INPUT_SIDE), LETTERBOX_GREY)
    canvas.paste(enlarged, ((INPUT_SIDE - enlarged.width) // 2, (INPUT_SIDE - enlarged.height) // 2))
    return canvas
