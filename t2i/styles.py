"""Style presets: Fooocus-style JSON lists and A1111 styles.csv files, loaded on demand.

Nothing is read at import time; call :func:`load_styles` with the folders to scan.

Semantics
---------
* A style prompt is a template containing ``{prompt}`` exactly once (more is an error).
* Styles are applied in order, each wrapping the result of the previous one (A1111's
  ``apply_styles_to_prompt``).
* Negative prompts follow A1111's ``merge_prompts``: a style negative containing
  ``{prompt}`` wraps the current negative; otherwise the two are joined with ", ",
  skipping empties (user negative first, then each style's in order).
* Prompts without ``{prompt}`` (A1111 csv, or a JSON entry) are stored as ``"{prompt}, text"``.
* When the text substituted for ``{prompt}`` is empty, the separators next to it are tidied,
  so ``"{prompt}, text"`` with an empty prompt gives ``"text"`` exactly as A1111 does.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable
from typing import NamedTuple

BUILTIN_STYLES_DIR = Path(__file__).resolve().parent.parent / "styles"
PREVIEWS_DIR = BUILTIN_STYLES_DIR / "previews"  # thumbnails made by scripts/style_previews.py

PLACEHOLDER = "{prompt}"
MAX_NAME_CHARS = 200
STYLE_FILE_SUFFIXES = (".json", ".csv")


class UnknownStyleError(ValueError):
    """A style name that is not in the library."""

    def __init__(self, name: str):
        super().__init__(f"unknown style {name!r}")
        self.name = name


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = PLACEHOLDER
    negative_prompt: str = ""
    source: str = ""


@dataclass
class StyleLibrary:
    styles: dict[str, Style] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def get(self, name: str) -> Style | None:
        """Return the style whose name matches case-insensitively, or None."""
        key = style_key(name)
        for style_name, style in self.styles.items():
            if style_key(style_name) == key:
                return style
        return None

    def names(self) -> list[str]:
        """Return display names in load order."""
        return list(self.styles)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self.styles)


class StyledPrompt(NamedTuple):
    prompt: str
    negative_prompt: str


def style_key(name: str) -> str:
    """The key names are compared by: case and surrounding spaces do not matter."""
    return name.strip().casefold()


_SEPARATORS = ",;. \t\r\n"


def _merge(template: str, text: str) -> str:
    """A1111 merge_prompts, plus tidying of the separators around an empty insertion."""
    text = text.strip()
    if PLACEHOLDER not in template:
        return ", ".join(part for part in (text, template.strip()) if part)
    if text:
        return template.replace(PLACEHOLDER, text).strip()
    before, after = (part.strip() for part in template.split(PLACEHOLDER, 1))
    if not before:
        return after.lstrip(_SEPARATORS)
    if not after:
        return before.rstrip(_SEPARATORS)
    if after[0] in ",;.":  # "photo of {prompt}, sharp" -> "photo of, sharp"
        return before.rstrip(",;. \t") + after
    return f"{before} {after}"


def apply_styles(prompt: str, negative: str, names: list[str], library: StyleLibrary) -> StyledPrompt:
    """Apply the named styles in order; return StyledPrompt(prompt, negative_prompt) (a 2-tuple)."""
    chosen: list[Style] = []
    used: set[str] = set()
    for name in names:
        style = library.get(name) if isinstance(name, str) else None
        if style is None:
            raise UnknownStyleError(str(name))
        if style_key(style.name) in used:
            continue  # selecting a style twice applies it once
        used.add(style_key(style.name))
        chosen.append(style)
    positive, negative_out = prompt.strip(), negative.strip()
    for style in chosen:
        positive = _merge(style.prompt, positive)
        negative_out = _merge(style.negative_prompt, negative_out)
    return StyledPrompt(positive, negative_out)


def safe_file_stem(stem: str, max_chars: int = 64) -> str:
    """Reduce a file stem to [A-Za-z0-9_-] characters; 'styles' if nothing is left."""
    stem = stem.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:max_chars].strip("_-")
    return cleaned or "styles"


def preview_path(name: str) -> Path:
    """Where the preview thumbnail of the style `name` lives (it may not exist)."""
    return PREVIEWS_DIR / f"{safe_file_stem(name)}.png"


class SessionStyles:
    """Presets that each session imported, held in memory only (never written to disk), on top of shared ones.

    Bounded: at most `max_styles` per session, and the `max_sessions` most recently used sessions are kept
    (an older session's imports are forgotten; it can upload them again).
    """

    def __init__(self, shared: StyleLibrary, max_sessions: int = 256, max_styles: int = 1000):
        self.shared = shared
        self.max_sessions, self.max_styles = max_sessions, max_styles
        self._sessions: OrderedDict[str, dict[str, Style]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, session: str, styles: list[Style]) -> list[str]:
        """Add a session's imported styles; refuses names already taken (shared or imported before) and overflow."""
        if not session:
            raise ValueError("importing styles needs a session")
        with self._lock:
            own = self._sessions.get(session, {})
            for style in styles:
                if style.name in self.shared or style_key(style.name) in own:
                    where = "a shared style" if style.name in self.shared else "imported before in this session"
                    raise ValueError(f"style {style.name!r} already exists ({where})")
            if len(own) + len(styles) > self.max_styles:
                raise ValueError(f"a session may import at most {self.max_styles} styles; "
                                 f"this one has {len(own)} and the file adds {len(styles)}")
            self._sessions[session] = {**own, **{style_key(style.name): style for style in styles}}
            self._sessions.move_to_end(session)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return [style.name for style in styles]

    def imported(self, session: str) -> list[str]:
        """Names the session imported, in import order."""
        with self._lock:
            return [style.name for style in self._sessions.get(session, {}).values()]

    def uses_imported(self, session: str, names: Iterable) -> bool:
        """Whether any of `names` is a style the session imported."""
        with self._lock:
            own = self._sessions.get(session, {})
            return any(isinstance(name, str) and style_key(name) in own for name in names)

    def library(self, session: str) -> StyleLibrary:
        """The shared presets followed by the session's own."""
        with self._lock:
            own = list(self._sessions.get(session, {}).values())
            if own:
                self._sessions.move_to_end(session)
        return StyleLibrary({**self.shared.styles, **{style.name: style for style in own}})

    def forget(self, session: str) -> None:
        """Drop a session's imported styles (its page closed, or the user asked)."""
        with self._lock:
            self._sessions.pop(session, None)
