"""Image safety checkers: NudeNet (always, offline) and diffusers' StableDiffusionSafetyChecker (when found).

NudeNet's ONNX detector ships inside its wheel, so it runs offline. The Stable Diffusion checker's weights
(~1.2 GB) are never downloaded by the app: it loads from a local folder or the local hub cache named by
T2I_SD_SAFETY_CHECKER, and is skipped with a logged note otherwise.
"""

from __future__ import annotations

import logging

from t2i.safety.gate import load_policy

from .nudenet_checker import NudeNetChecker
from .sd_checker import load_sd_checker

log = logging.getLogger(__name__)


def register(settings):
    """NudeNet with the operator's thresholds, plus the SD safety checker when its weights are present."""
    policy = load_policy(settings)
    plugins = [NudeNetChecker(policy.thresholds_for(NudeNetChecker.name, NudeNetChecker.default_thresholds))]
    sd_checker = load_sd_checker(settings.safety_sd_checker)
    if sd_checker is not None:
        plugins.append(sd_checker)
    return plugins
