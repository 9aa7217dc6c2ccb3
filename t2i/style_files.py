"""Style files: Fooocus JSON lists and A1111 styles.csv, read from the style folders (a bad entry is skipped and
reported) or uploaded by a user (read whole or refused, with the line that is wrong)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path

from t2i.styles import (
    MAX_NAME_CHARS, PLACEHOLDER, STYLE_FILE_SUFFIXES, Style, StyleLibrary, safe_file_stem, style_key,
)


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
                first = seen.get(style_key(style.name))
                if first is not None:
                    library.problems.append(
                        f"{source}: duplicate style name {style.name!r} "
                        f"(already defined in {first.source}); skipped"
                    )
                    continue
                seen[style_key(style.name)] = style
                library.styles[style.name] = style
    return library



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
        if style_key(style.name) in seen:
            raise ValueError(f"style {style.name!r} appears twice in the file")
        seen.add(style_key(style.name))
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
    taken = {style_key(n): "an existing style" for n in existing_names}
    for style in load_styles([dest_folder]).styles.values():
        taken.setdefault(style_key(style.name), Path(style.source).name)
    for style in styles:
        if style_key(style.name) in taken:
            raise ValueError(f"style {style.name!r} already exists ({taken[style_key(style.name)]})")

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
