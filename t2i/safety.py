"""The safety gate: runs every prompt checker and image checker plugin, and fails closed.

A checker that raises counts as a flag (the image is withheld, the prompt refused): an outage of the
checker must never let content through. What happens to a flagged image is the operator's policy
(Settings.safety_action); no request field can change it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PIL import Image, ImageFilter

from .plugins import PluginManager, Verdict
from .request import RequestError
from .settings import Settings

log = logging.getLogger(__name__)
ACTIONS = ("block", "blur", "black")
PROMPT_REFUSED = "this prompt was refused by the content policy"


class PromptRefused(RequestError):
    """A prompt checker flagged the prompt; the message does not say which word matched."""


@dataclass
class ScreenedImage:
    """An image after screening: the image to show (None when withheld) and a notice for the user."""

    image: Image.Image | None
    flagged: bool = False
    notice: str = ""


class SafetyGate:
    """Applies the loaded checkers to prompts and images under the operator's policy."""

    def __init__(self, plugins: PluginManager, settings: Settings):
        if settings.safety_action not in ACTIONS:
            raise ValueError(f"T2I_SAFETY_ACTION must be one of {', '.join(ACTIONS)}; got {settings.safety_action!r}")
        self.action = settings.safety_action
        self.prompt_checkers = plugins.of_kind("prompt_check")
        self.image_checkers = plugins.of_kind("image_check")

    def check_prompts(self, *texts: str) -> None:
        """Raise PromptRefused if any checker flags any of the texts (prompt, negative, style-expanded)."""
        for text in texts:
            if not text:
                continue
            for checker in self.prompt_checkers:
                verdict = _run(checker.name, checker.check_prompt, text)
                if verdict.flagged:
                    log.info("prompt refused by %s: %s", checker.name, verdict.reason)
                    raise PromptRefused(PROMPT_REFUSED)

    def screen_image(self, image: Image.Image, what: str = "image") -> ScreenedImage:
        """Run every image checker; a flagged image is blocked, blurred or blacked out by policy."""
        for checker in self.image_checkers:
            verdict = _run(checker.name, checker.check_image, image)
            if verdict.flagged:
                log.info("%s flagged by %s: %s", what, checker.name, verdict.reason)
                return ScreenedImage(self._apply_policy(image), True, f"{what} withheld by the safety checker")
        return ScreenedImage(image)

    def _apply_policy(self, image: Image.Image) -> Image.Image | None:
        if self.action == "blur":
            return image.filter(ImageFilter.GaussianBlur(radius=max(image.size) / 8))
        if self.action == "black":
            return Image.new(image.mode, image.size)
        return None


def _run(name: str, check, value) -> Verdict:
    try:
        return check(value)
    except Exception as exc:  # fail closed: a checker that cannot judge flags
        log.exception("safety checker %s failed", name)
        return Verdict(True, f"checker {name} failed: {type(exc).__name__}")
