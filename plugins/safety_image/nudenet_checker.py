"""NudeNet's detector as an image checker, with a documented threshold per detector class.

Defaults flag exposed genitalia and anus at a detection score of 0.35, exposed female breasts and buttocks
at 0.45; covered parts, faces, feet, bellies, armpits and male chests are not flagged (threshold inf).
An operator may set any class's threshold in the policy file: {"thresholds": {"nudenet": {"BELLY_EXPOSED": 0.6}}}.
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
        detections = self.detector.detect(np.asarray(image.convert("RGBA")))
        scores: dict[str, float] = {}
        for found in detections:
            scores[found["class"]] = max(scores.get(found["class"], 0.0), round(float(found["score"]), 4))
        over = sorted(c for c, s in scores.items() if s >= self.thresholds.get(c, OFF))
        return Verdict(bool(over), f"detected {', '.join(over)}" if over else "", scores)
