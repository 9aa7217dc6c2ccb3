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

import csv
import io
import json
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
        key = _key(name)
        for style_name, style in self.styles.items():
            if _key(style_name) == key:
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


def _key(name: str) -> str:
    return name.strip().casefold()


# --------------------------------------------------------------------------- parsing


def _check_name(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("entry has no name")
    name = raw.strip()
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"name longer than {MAX_NAME_CHARS} characters")
    if any(ch in name for ch in "\r\n\t\x00"):
        raise ValueError(f"name {name[:40]!r} contains control characters")
    return name


def _check_text(raw: object, what: str, name: str) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise ValueError(f"style {name!r}: {what} is not a string")
    if raw.count(PLACEHOLDER) > 1:
        raise ValueError(f"style {name!r}: {what} contains {PLACEHOLDER} more than once")
    return raw


def _normalize_prompt(prompt: str) -> str:
    """A prompt without {prompt} gets the user prompt in front, joined with ", " (A1111)."""
    prompt = prompt.strip()
    if PLACEHOLDER in prompt:
        return prompt
    return f"{PLACEHOLDER}, {prompt}" if prompt else PLACEHOLDER


def _parse_json(text: str, source: str) -> tuple[list[Style], list[str]]:
    """Parse a Fooocus list; raise ValueError for a file-level problem, list entry problems."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON list of styles, got {type(data).__name__}")
    styles: list[Style] = []
    problems: list[str] = []
    for i, entry in enumerate(data):
        try:
            if not isinstance(entry, dict):
                raise ValueError(f"expected an object, got {type(entry).__name__}")
            name = _check_name(entry.get("name"))
            prompt = _normalize_prompt(_check_text(entry.get("prompt"), "prompt", name))
            negative = _check_text(entry.get("negative_prompt"), "negative_prompt", name)
            styles.append(Style(name, prompt, negative, source))
        except ValueError as exc:
            problems.append(f"{source}: entry {i + 1}: {exc}; skipped")
    return styles, problems


CSV_COLUMNS = ("name", "prompt", "negative_prompt")  # what A1111 writes; it also reads an old "name,text" header


def _parse_csv(text: str, source: str) -> tuple[list[Style], list[str]]:
    """Parse an A1111 styles.csv strictly; raise ValueError for a file-level problem, list row problems."""
    rows = _csv_rows(text)
    header = [column.strip() for column in rows[0][1]] if rows else []
    _check_header(header)
    styles: list[Style] = []
    problems: list[str] = []
    for line, row in rows[1:]:
        if not any(value.strip() for value in row) or row[0].lstrip().startswith("#"):
            continue  # blank lines, and rows A1111 treats as comments
        try:
            if len(row) != len(header):
                raise ValueError(f"{len(row)} field{'' if len(row) == 1 else 's'} where the header has "
                                 f"{len(header)} ({','.join(header)})")
            values = dict(zip(header, row))
            name = _check_name(values["name"])
            prompt = _normalize_prompt(_check_text(values.get("prompt", values.get("text")), "prompt", name))
            negative = _check_text(values.get("negative_prompt"), "negative_prompt", name)
            styles.append(Style(name, prompt, negative.strip(), source))
        except ValueError as exc:
            problems.append(f"{source}: line {line}: {exc}; skipped")
    return styles, problems


def _csv_rows(text: str) -> list[tuple[int, list[str]]]:
    """The CSV rows with the line each starts on; an unbalanced or stray quote is an error, never guessed around."""
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True)
    rows, line = [], 1
    try:
        for row in reader:
            rows.append((line, row))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise ValueError(f"invalid CSV at line {line}: {exc} (an unbalanced or stray quote?)") from None
    return rows


def _check_header(header: list[str]) -> None:
    """Raise ValueError unless the header is A1111's: name, prompt (or the old text), negative_prompt."""
    if "name" not in header or not ({"prompt", "text"} & set(header)):
        raise ValueError(f"expected a CSV header with columns {','.join(CSV_COLUMNS)}")
    unknown = [column for column in header if column not in (*CSV_COLUMNS, "text")]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r} in the header; expected {','.join(CSV_COLUMNS)}")
    repeated = [column for column in header if header.count(column) > 1]
    if repeated:
        raise ValueError(f"column {repeated[0]!r} appears twice in the header")
    if {"prompt", "text"} <= set(header):
        raise ValueError("the header has both 'prompt' and the old 'text' column; keep one")


def _parse_file(data: bytes, suffix: str, source: str) -> tuple[list[Style], list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    if suffix == ".json":
        return _parse_json(text, source)
    if suffix == ".csv":
        return _parse_csv(text, source)
    raise ValueError(f"unsupported file type {suffix!r} (expected .json or .csv)")


# --------------------------------------------------------------------------- public API


def load_styles(folders: list[Path]) -> StyleLibrary:
    """Load every *.json (Fooocus) and *.csv (A1111) style file in the folders; never raises for bad content."""
    library = StyleLibrary()
    seen: dict[str, Style] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            continue
        if not folder.is_dir():
            library.problems.append(f"{folder}: not a folder; skipped")
            continue
        files = sorted(
            p for p in folder.iterdir()
            if p.suffix.lower() in STYLE_FILE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        )
        for path in files:
            source = str(path)
            try:
                styles, problems = _parse_file(path.read_bytes(), path.suffix.lower(), source)
            except (OSError, ValueError) as exc:
                library.problems.append(f"{source}: {exc}; file skipped")
                continue
            library.problems.extend(problems)
            for style in styles:
                first = seen.get(_key(style.name))
                if first is not None:
                    library.problems.append(
                        f"{source}: duplicate style name {style.name!r} "
                        f"(already defined in {first.source}); skipped"
                    )
                    continue
                seen[_key(style.name)] = style
                library.styles[style.name] = style
    return library


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
        if _key(style.name) in used:
            continue  # selecting a style twice applies it once
        used.add(_key(style.name))
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


def read_style_upload(path: Path, max_bytes: int = 1_000_000) -> list[Style]:
    """Read an uploaded .json (Fooocus) or .csv (A1111) style file whole: every entry valid, names unique.

    Raises ValueError with a message for the user; unlike :func:`load_styles` nothing is skipped.
    """
    return _read_upload(Path(path), max_bytes)[1]


def _read_upload(path: Path, max_bytes: int) -> tuple[bytes, list[Style]]:
    """The bytes of an uploaded style file and its styles, read once (see read_style_upload)."""
    suffix = path.suffix.lower()
    if suffix not in STYLE_FILE_SUFFIXES:
        raise ValueError(f"unsupported style file type {suffix or '(none)'!r}: expected .json or .csv")
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ValueError(f"cannot read style file: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise ValueError(f"style file is larger than {max_bytes} bytes")
    styles, problems = _parse_file(data, suffix, f"{safe_file_stem(path.stem)}{suffix}")  # ValueError propagates
    if problems:
        raise ValueError("invalid style file: " + "; ".join(p.removesuffix("; skipped") for p in problems[:5]))
    if not styles:
        raise ValueError("style file contains no styles")
    seen: set[str] = set()
    for style in styles:
        if _key(style.name) in seen:
            raise ValueError(f"style {style.name!r} appears twice in the file")
        seen.add(_key(style.name))
    return data, styles


def import_style_file(
    path: Path,
    dest_folder: Path,
    max_bytes: int = 1_000_000,
    *,
    existing_names: Iterable[str] = (),
) -> list[str]:
    """Validate an uploaded .json/.csv style file, copy it into dest_folder safely, return its style names."""
    path, dest_folder = Path(path), Path(dest_folder)
    data, styles = _read_upload(path, max_bytes)
    suffix, stem = path.suffix.lower(), safe_file_stem(path.stem)
    taken = {_key(n): "an existing style" for n in existing_names}
    for style in load_styles([dest_folder]).styles.values():
        taken.setdefault(_key(style.name), Path(style.source).name)
    for style in styles:
        if _key(style.name) in taken:
            raise ValueError(f"style {style.name!r} already exists ({taken[_key(style.name)]})")

    dest_folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        target = dest_folder / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
        if target.resolve().parent != dest_folder.resolve():  # belt and braces
            raise ValueError("unsafe file name")
        try:
            with target.open("xb") as fh:  # never overwrite
                fh.write(data)
            break
        except FileExistsError:
            continue
    else:
        raise ValueError(f"too many style files named {stem!r}")
    return [style.name for style in styles]


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
                if style.name in self.shared or _key(style.name) in own:
                    where = "a shared style" if style.name in self.shared else "imported before in this session"
                    raise ValueError(f"style {style.name!r} already exists ({where})")
            if len(own) + len(styles) > self.max_styles:
                raise ValueError(f"a session may import at most {self.max_styles} styles; "
                                 f"this one has {len(own)} and the file adds {len(styles)}")
            self._sessions[session] = {**own, **{_key(style.name): style for style in styles}}
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
            return any(isinstance(name, str) and _key(name) in own for name in names)

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
