"""The prompt checker's rates on every evaluation set (old, blind, held-out, dev), per category and per
language, as the default policy applies them. Prints the tables and writes bench/results/safety_rates.json,
from which the README's safety figures are taken. Only rates leave here: no prompt is printed. By default the
checker runs as shipped (the word lists and the n-gram classifier at its default threshold); `--ngram T` runs the
classifier at T instead (above 1: off, the lists alone; no value: the threshold in
plugins/safety_prompt/model/ngram_meta.json) and writes bench/results/safety_rates_ngram.json instead.
`--tables` runs nothing: it renders README's Safety rates tables (per set; per category, language and trick on the
blind and held-out sets) from the results file, and with `--write` puts them between README's markers.

    python bench/safety_rates.py
    python bench/safety_rates.py --ngram
    python bench/safety_rates.py --tables --write
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, write_result  # noqa: E402
from t2i.plugins import PluginManager  # noqa: E402
from t2i.safety.evaluation import checkout_sets, rates, refused_by, table  # noqa: E402
from t2i.safety.gate import SafetyGate  # noqa: E402
from t2i.settings import Settings  # noqa: E402
from t2i_plugins.safety_prompt.checker import DEFAULT_THRESHOLDS, PromptModeration  # noqa: E402
from t2i_plugins.safety_prompt.ngram import MODEL_DIR  # noqa: E402


README = Path(__file__).resolve().parent.parent / "README.md"
TABLES_BEGIN = "<!-- tables: safety-rates (bench/safety_rates.py --tables --write) -->"
TABLES_END = "<!-- /tables -->"
BLIND = {"blocked": "blind blocked", "benign": "blind benign"}  # the blind evaluation sets' names in the tables
EVERYDAY_COLUMNS = ("everyday", "everyday art", "everyday tags", "everyday fresh")  # per language, beside them
# the blind blocked and benign sets are one pair; each held-out set holds both kinds
PAIRS = {"blind": ("blocked", "benign"), "held-out": ("held-out", "held-out"),
         "held-out 2": ("held-out 2", "held-out 2"), "held-out 3": ("held-out 3", "held-out 3"),
         "held-out 4": ("held-out 4", "held-out 4"), "held-out 5": ("held-out 5", "held-out 5"),
         "held-out 6": ("held-out 6", "held-out 6"), "held-out 7": ("held-out 7", "held-out 7"),
         "held-out 8": ("held-out 8", "held-out 8")}


def count(row: dict | None, with_rate: bool = False) -> str:
    """right/total (with its rate), or a dash for no such prompts."""
    if row is None:
        return "–"
    return f"{row['right']}/{row['total']}" + (f" ({row['rate']:.1%})" if with_rate else "")


def tables(result: dict) -> str:
    """README's Safety rates tables from a safety_rates results file: every set, then per category, language and
    trick on the blind and held-out sets (blocked and benign passed), and each everyday set per language."""
    sets, ngram = result["sets"], result["thresholds"].get("ngram")
    shipped = f"n-gram classifier at {ngram}" if ngram is not None and ngram <= 1 else "lists alone"
    stamp = f"`bench/results/safety_rates.json`, {result['time'].replace('T', ' ').rstrip('Z')} UTC"
    lines = [f"As shipped (the word lists, {shipped}; {stamp}):", "",
             "| set | blocked | benign passed |", "|---|---|---|"]
    for name, rows in sets.items():
        blocked, passed = (count(rows.get(kind, {}).get("all"), with_rate=True) for kind in ("block", "pass"))
        lines.append(f"| {BLIND.get(name, name)} | {blocked} | {passed} |")
    pairs = {label: (sets[block], sets[benign]) for label, (block, benign) in PAIRS.items()
             if block in sets and benign in sets}
    everyday = {name: sets[name] for name in EVERYDAY_COLUMNS if name in sets}
    for group, extra, kinds in (("category", {}, ("block", "pass")), ("language", everyday, ("block", "pass")),
                                ("trick", {}, ("block",))):
        columns = [(f"{label} {'blocked' if kind == 'block' else 'passed'}", rows, kind)
                   for label, pair in pairs.items() for rows, kind in zip(pair, ("block", "pass")) if kind in kinds]
        keys = sorted({key for _, rows, kind in columns for key in rows.get(kind, {}).get(group, {})})
        header = [name for name, _, _ in columns] + [f"{name} passed" for name in extra]
        lines += ["", f"| {group} | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
        for key in keys:
            cells = [count(rows.get(kind, {}).get(group, {}).get(key)) for _, rows, kind in columns]
            cells += [count(rows.get("pass", {}).get(group, {}).get(key)) for rows in extra.values()]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tables(text: str) -> None:
    """Put the tables between README's markers (which must be there once each)."""
    readme = README.read_text(encoding="utf-8")
    begin, end = readme.index(TABLES_BEGIN) + len(TABLES_BEGIN), readme.index(TABLES_END)
    README.write_text(readme[:begin] + "\n" + text + "\n" + readme[end:], encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ngram", type=float, nargs="?", const=json.loads((MODEL_DIR / "ngram_meta.json").read_text())[
        "threshold"], help="run the n-gram classifier at this threshold (no value: its model's own; above 1: off; "
                            "default: as shipped)")
    parser.add_argument("--tables", action="store_true",
                        help="run nothing: print README's rates tables from bench/results/safety_rates.json")
    parser.add_argument("--write", action="store_true", help="with --tables: write them into README between markers")
    arguments = parser.parse_args()
    if arguments.tables:
        text = tables(json.loads((RESULTS_DIR / "safety_rates.json").read_text(encoding="utf-8")))
        write_tables(text) if arguments.write else print(text)
        return
    ngram = arguments.ngram
    thresholds = DEFAULT_THRESHOLDS if ngram is None else {**DEFAULT_THRESHOLDS, "ngram": ngram}
    settings = Settings(device="cpu", entry_point_plugins=False, safety_allow_unchecked_images=True,
                        data_dir=Path(tempfile.mkdtemp(prefix="t2i-bench-")))
    gate = SafetyGate(PluginManager([PromptModeration(thresholds)]), settings)

    results = {}
    for name, cases in checkout_sets(Path(__file__).resolve().parent.parent / "tests").items():
        results[name] = rates(cases, refused_by(gate))
        print(table(name, results[name]))
    write_result("safety_rates" if ngram is None else "safety_rates_ngram",
                 {"policy": settings.safety_categories, "thresholds": thresholds, "sets": results},
                 model="prompt_moderation word lists (no image model)")
    print(json.dumps({name: {k: v["all"]["rate"] for k, v in r.items()} for name, r in results.items()}))


if __name__ == "__main__":
    main()
