"""The safety gate: runs the prompt and image checker plugins under the operator's policy, and fails closed.

- A checker that raises or runs past the policy's timeout counts as a flag: an outage of a checker must
  never let content through. The error is logged and the server keeps serving.
- With no image checker loaded, every image is withheld unless the operator explicitly allows unchecked
  images (T2I_SAFETY_ALLOW_UNCHECKED=1).
- The negative prompt is checked alone and as what it asks for, "<prompt>; without <item>; ..." for each of
  its comma-separated items, so a negative prompt cannot take the clothes off an innocent-looking prompt.
- A prompt checker names the categories it flags (t2i/safety/categories.py) by scoring each 1.0 under the
  category's name; the operator's T2I_SAFETY_CATEGORIES decides what each does: refuse the prompt (`block`,
  the user is told the category, never the matched word), let it run with a content warning naming the
  category on each of its images (`warn`: the UI's info, the APIs' notices, the CLI's stderr), or nothing
  (`off`). A flag that names no category is blocked. Sexual content with minors is always blocked.
- A live preview with less than PREVIEW_MIN_SIDE pixels of information on its shorter side is not screened:
  an image checker reads nothing there (bench/nudenet_min_size.py: no face in photos shrunk to 16 px; at 24 px
  at most 0.29; from 32 px on, as the checker shows them, 0.36-0.58). Approximate previews (latents times 4,
  nearest) of a small model fall below it; the final image is always screened, whatever its size, because a
  small image can still show a body.
- Every verdict goes to a JSON-lines audit log (no prompt text, no image data) for tuning thresholds.

The policy comes from Settings (env vars) and an optional JSON file (T2I_SAFETY_CONFIG) whose keys
override them; no request field can change it.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from t2i.plugins import Plugin, PluginManager, Verdict
from t2i.request import RequestError
from t2i.safety.categories import ALWAYS_BLOCKED, CATEGORIES, CATEGORY_LABELS, UNSPECIFIED, parse_categories
from t2i.settings import SAFETY_ACTIONS, Settings

log = logging.getLogger(__name__)
PROMPT_REFUSED = "this prompt was refused by the content policy"
POLICY_KEYS = ("action", "categories", "checkers", "thresholds", "timeout_s", "audit_log", "allow_unchecked_images")
# measured (bench/nudenet_min_size.py): NudeNet's face scores on photos of people, as the checker shows them,
# stay 0.36-0.84 down to 32 px; at 24 px NudeNet's own fit reads at most 0.29, at 16 px nothing either way
PREVIEW_MIN_SIDE = 24
# content warnings kept per request id until its images are screened; a bound, not a lifetime (oldest dropped)
MAX_PENDING_WARNINGS = 4096


class PromptRefused(RequestError):
    """A prompt checker flagged the prompt; the message does not say which word matched."""


@dataclass(frozen=True)
class SafetyPolicy:
    """What the operator decided: the action on flagged images, which checkers run, thresholds, limits."""

    action: str = "block"
    categories: dict = field(default_factory=lambda: parse_categories(""))  # category -> block, warn or off
    checkers: tuple[str, ...] = ()  # empty: every loaded checker runs
    thresholds: dict = field(default_factory=dict)  # checker name -> {score name: threshold}
    timeout_s: float = 10.0
    audit_log: Path | None = None
    allow_unchecked_images: bool = False

    def thresholds_for(self, checker: str, defaults: dict[str, float]) -> dict[str, float]:
        """A checker's thresholds: its documented defaults with the operator's overrides; unknown names raise."""
        given = self.thresholds.get(checker, {})
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(f"safety policy: {checker} has no score {unknown[0]!r}; known: {', '.join(defaults)}")
        return {**defaults, **{name: float(value) for name, value in given.items()}}


def load_policy(settings: Settings) -> SafetyPolicy:
    """The policy from settings, overridden by the JSON config file if one is set; bad values raise."""
    values = {"action": settings.safety_action, "categories": settings.safety_categories,
              "checkers": settings.safety_checkers, "thresholds": {},
              "timeout_s": settings.safety_timeout_s,
              "audit_log": settings.safety_audit_log or settings.data_dir / "safety_audit.jsonl",
              "allow_unchecked_images": settings.safety_allow_unchecked_images}
    if settings.safety_config:
        with open(settings.safety_config, encoding="utf-8") as file:
            given = json.load(file)
        if not isinstance(given, dict) or set(given) - set(POLICY_KEYS):
            raise ValueError(f"safety config {settings.safety_config}: expected an object with keys from "
                             f"{', '.join(POLICY_KEYS)}")
        values.update(given)
    policy = SafetyPolicy(action=values["action"], categories=parse_categories(values["categories"]),
                          checkers=tuple(values["checkers"]),
                          thresholds=dict(values["thresholds"]), timeout_s=float(values["timeout_s"]),
                          audit_log=Path(values["audit_log"]) if values["audit_log"] else None,
                          allow_unchecked_images=bool(values["allow_unchecked_images"]))
    if policy.action not in SAFETY_ACTIONS:  # Settings checks the variable; this checks the policy file too
        raise ValueError(f"T2I_SAFETY_ACTION must be one of {', '.join(SAFETY_ACTIONS)}; got {policy.action!r}")
    if not policy.timeout_s > 0:
        raise ValueError(f"safety timeout must be positive; got {policy.timeout_s!r}")
    return policy


@dataclass
class ScreenedImage:
    """An image after screening: the image to show (None when withheld) and a notice for the user."""

    image: Image.Image | None
    flagged: bool = False
    notice: str = ""


class _Missing(Plugin):
    """Stands in for a checker the policy names but that did not load: it flags everything."""

    def __init__(self, name: str, kind: str):
        self.name, self.kind = name, kind

    def check_prompt(self, text: str) -> Verdict:
        return Verdict(True, f"checker {self.name} is required by the policy but not loaded")

    check_image = check_prompt


class AuditLog:
    """Appends one JSON object per verdict; thread-safe, never holds prompt text or image data."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, request_id: str, what: str, checker: str, verdict: Verdict, seconds: float,
              categories: dict[str, str] | None = None) -> None:
        """Record one verdict, with the flagged categories and what the policy did with each (a failure to write
        is logged, never fatal to serving)."""
        if self.path is None:
            return
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "request_id": request_id,
                 "what": what, "checker": checker, "flagged": verdict.flagged, "reason": verdict.reason,
                 "scores": verdict.scores, "seconds": round(seconds, 4)}
        if categories is not None:
            entry["categories"] = categories
        try:
            with self._lock, open(self.path, "a", encoding="utf-8") as file:
                file.write(json.dumps(entry, default=float) + "\n")
        except OSError:
            log.exception("could not write the safety audit log %s", self.path)


class SafetyGate:
    """Applies the policy's checkers to prompts and images."""

    def __init__(self, plugins: PluginManager, settings: Settings, policy: SafetyPolicy | None = None):
        self.policy = policy or load_policy(settings)
        self.action = self.policy.action
        self.prompt_checkers = self._select(plugins, "prompt_check")
        self.image_checkers = self._select(plugins, "image_check")
        self.audit = AuditLog(self.policy.audit_log)
        self._warnings: OrderedDict[str, str] = OrderedDict()  # request id -> its content warning
        self._warnings_lock = threading.Lock()
        if not self.image_checkers:
            log.warning("no image safety checker is loaded: %s", "images are served UNCHECKED (operator's choice)"
                        if self.policy.allow_unchecked_images else "every image will be withheld (fail closed)")

    def _select(self, plugins: PluginManager, kind: str) -> list:
        loaded = plugins.of_kind(kind)
        if not self.policy.checkers:
            return loaded
        named = [p for p in plugins.plugins.values() if p.name in self.policy.checkers]
        missing = [n for n in self.policy.checkers if n not in plugins.plugins]
        for name in missing:
            log.error("safety checker %s is named by the policy but not loaded: everything it would judge is "
                      "refused", name)
        return [p for p in named if p.kind == kind] + [_Missing(n, kind) for n in missing]

    def check_prompts(self, prompt: str, negative_prompt: str = "", request_id: str = "") -> list[str]:
        """Raise PromptRefused if a checker flags a blocked category in the prompt, the negative prompt, or what
        they ask for together; return the warned categories found (the prompt runs)."""
        request_id = request_id or secrets.token_hex(6)
        texts = [("prompt", prompt), ("negative prompt", negative_prompt)]
        if prompt and negative_prompt:  # each comma-separated negative item is something the image is without
            items = [item.strip() for item in negative_prompt.split(",") if item.strip()]
            texts.append(("prompt without negative", "; ".join([prompt, *(f"without {item}" for item in items)])))
        warned: list[str] = []
        for what, text in texts:
            if not text:
                continue
            for checker in self.prompt_checkers:
                actions = self._judge_prompt(checker, text, what, request_id)
                blocked = [category for category, action in actions.items() if action == "block"]
                if blocked:
                    raise PromptRefused(refusal_message(blocked[0]))
                warned += [c for c, action in actions.items() if action == "warn" and c not in warned]
        if warned:  # each final image of this request carries the warning (screen_image)
            with self._warnings_lock:
                self._warnings[request_id] = warning_message(warned)
                while len(self._warnings) > MAX_PENDING_WARNINGS:
                    self._warnings.popitem(last=False)
        return warned

    def content_warning(self, request_id: str) -> str:
        """The content warning of a request whose prompt touched a `warn` category ("" if none)."""
        with self._warnings_lock:
            return self._warnings.get(request_id, "")

    def _judge_prompt(self, checker, text: str, what: str, request_id: str) -> dict[str, str]:
        """The categories a prompt checker flagged, each with the policy's action (audited and logged)."""
        start = time.perf_counter()
        verdict = _run_with_timeout(checker.name, checker.check_prompt, text, self.policy.timeout_s)
        actions = {}
        if verdict.flagged:
            named = [c for c in CATEGORIES if verdict.scores.get(c, 0) >= 1.0] or [UNSPECIFIED]
            actions = {c: "block" if c in (UNSPECIFIED, ALWAYS_BLOCKED) else self.policy.categories[c] for c in named}
            log.info("%s flagged by %s (request %s): %s -> %s", what, checker.name, request_id, verdict.reason,
                     actions)
        self.audit.write(request_id, what, checker.name, verdict, time.perf_counter() - start, actions)
        return actions

    def screen_image(self, image: Image.Image, what: str = "image", request_id: str = "") -> ScreenedImage:
        """Run every image checker; a flagged image is blocked, blurred or blacked out by policy. A final image
        of a request with a content warning carries it in its notice."""
        screened = self._screen(image, what, request_id or secrets.token_hex(6))
        warning = self.content_warning(request_id) if what == "image" and request_id else ""
        if warning:
            screened.notice = "; ".join(n for n in (screened.notice, warning) if n)
        return screened

    def _screen(self, image: Image.Image, what: str, request_id: str) -> ScreenedImage:
        if not self.image_checkers and not self.policy.allow_unchecked_images:
            verdict = Verdict(True, "no image checker is loaded")
            self.audit.write(request_id, what, "none", verdict, 0.0)
            return ScreenedImage(self._apply_policy(image), True, f"{what} withheld: no safety checker is available")
        if what == "preview" and min(information_size(image)) < PREVIEW_MIN_SIDE:
            side = min(information_size(image))
            self.audit.write(request_id, what, "none", Verdict(False, f"not screened: {side} px of information, "
                             f"below the {PREVIEW_MIN_SIDE} px an image checker reads"), 0.0)
            return ScreenedImage(image)
        for checker in self.image_checkers:
            if self._judge(checker, checker.check_image, image, what, request_id).flagged:
                return ScreenedImage(self._apply_policy(image), True, f"{what} withheld by the safety checker")
        return ScreenedImage(image)

    def _judge(self, checker, check: Callable, value, what: str, request_id: str) -> Verdict:
        start = time.perf_counter()
        verdict = _run_with_timeout(checker.name, check, value, self.policy.timeout_s)
        self.audit.write(request_id, what, checker.name, verdict, time.perf_counter() - start)
        if verdict.flagged:
            log.info("%s flagged by %s (request %s): %s", what, checker.name, request_id, verdict.reason)
        return verdict

    def _apply_policy(self, image: Image.Image) -> Image.Image | None:
        if self.action == "blur":
            return image.filter(ImageFilter.GaussianBlur(radius=max(image.size) / 8))
        if self.action == "black":
            return Image.new(image.mode, image.size)
        return None


def refusal_message(category: str) -> str:
    """What the user is told: the category, never the matched word."""
    label = CATEGORY_LABELS.get(category)
    return f"{PROMPT_REFUSED} ({label})" if label else PROMPT_REFUSED


def warning_message(categories: list[str]) -> str:
    """What the user is told when a prompt touches `warn` categories: the categories, never the matched word."""
    labels = ", ".join(CATEGORY_LABELS.get(c, c) for c in categories)
    return f"content warning: the prompt touches {labels} (the operator's policy lets it run)"


def information_size(image: Image.Image) -> tuple[int, int]:
    """The image's width and height before nearest-neighbour enlargement: a 16x16 preview shown at 64x64 is 16x16."""
    pixels = np.asarray(image)
    width, height = image.size
    if min(width, height) < 2 or not (np.array_equal(pixels[0], pixels[1])
                                      and np.array_equal(pixels[:, 0], pixels[:, 1])):
        return width, height  # the first two rows or columns differ: no enlargement (the usual case, cheap)
    for factor in range(min(width, height), 1, -1):
        if width % factor or height % factor:
            continue
        cells = pixels[::factor, ::factor]
        if np.array_equal(np.repeat(np.repeat(cells, factor, axis=0), factor, axis=1), pixels):
            return width // factor, height // factor
    return width, height


def _run_with_timeout(name: str, check: Callable, value, timeout_s: float) -> Verdict:
    """The checker's verdict, or a flag when it raises, times out or returns something else (fail closed)."""
    outcome: dict = {}

    def work():
        try:
            outcome["verdict"] = check(value)
        except BaseException as exc:  # handed back below; the checker's thread must not die silently
            outcome["error"] = exc

    # a daemon thread: a hung checker cannot be killed, but it must not hold up serving or exit
    worker = threading.Thread(target=work, name=f"t2i-safety-{name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        log.error("safety checker %s timed out after %.1f s", name, timeout_s)
        return Verdict(True, f"checker {name} timed out after {timeout_s:g} s")
    if "error" in outcome:
        exc = outcome["error"]
        log.error("safety checker %s failed", name, exc_info=(type(exc), exc, exc.__traceback__))
        return Verdict(True, f"checker {name} failed: {type(exc).__name__}")
    if not isinstance(outcome.get("verdict"), Verdict):
        log.error("safety checker %s returned %r, not a Verdict", name, outcome.get("verdict"))
        return Verdict(True, f"checker {name} returned no verdict")
    return outcome["verdict"]
