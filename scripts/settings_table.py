"""The README's settings tables, printed from the declarations in t2i/settings.py.

`python scripts/settings_table.py` prints both tables; `--write` puts them into README.md, each below its
`<!-- settings table: NAME -->` marker (tests/test_settings.py fails while the README and the declarations differ).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from t2i.settings import FIELDS  # noqa: E402

README = ROOT / "README.md"
TABLES = ("general", "safety")


def marker(table: str) -> str:
    """The README line that the table follows."""
    return f"<!-- settings table: {table} (scripts/settings_table.py --write) -->"


def shown_default(field) -> str:
    """A default as the README shows it: 0/1 for switches, – for nothing, `text`, or the declared wording."""
    extra = field.json_schema_extra
    if extra["shown"]:
        return extra["shown"]
    value = field.default
    if isinstance(value, bool):
        return str(int(value))
    if value in ("", ()):
        return "–"
    if isinstance(value, str):
        return f"`{value}`"
    return f"{value:g}" if isinstance(value, float) else str(value)


def table(name: str) -> str:
    """The markdown table of the general or the safety variables, in declaration order."""
    rows = [f"| `{field.alias}` | {shown_default(field)} | {field.description} |" for field in FIELDS.values()
            if field.json_schema_extra["safety"] == (name == "safety")]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])


def write(readme: Path = README) -> None:
    """Replace each table below its marker in `readme` (the table ends at the first line not starting with |)."""
    lines = readme.read_text(encoding="utf-8").split("\n")
    for name in TABLES:
        start = lines.index(marker(name)) + 1
        end = start
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        lines[start:end] = table(name).split("\n")
    readme.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update the tables in {README.name}")
    if parser.parse_args().write:
        write()
    else:
        print("\n\n".join(table(name) for name in TABLES))
