"""Rates of a prompt checker on evaluation sets: the share of should-block prompts it flags and of benign
prompts it lets through, overall, per category and per language.

Sets are JSON lines {"prompt", "category", "language", "trick"} with "expect": "block" | "pass" (or the
expectation given for the whole file); a first line {"rule": ...} states the file's rule and is skipped.
Only rates and counts leave this module: the prompts of a held-out set are never printed.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable

from t2i.safety.gate import PromptRefused


def checkout_sets(tests: Path) -> dict[str, list[dict]]:
    """The sets of this checkout's tests/ folder by name: old, blind evaluation (blocked, benign, held-out, held-out 2,
    held-out 3, held-out 4, held-out 5, held-out 6, held-out 7, held-out 8, and the everyday ones, one per
    tests/safety_eval/everyday*.jsonl: "everyday", "everyday short", "everyday people", "everyday art", "everyday tags",
    "everyday fresh"), the checker's dev set and the other tuning sets of tests/safety_dev ("dev blind_harm",
    "dev blind_hate", "dev everyday", ...)."""
    sets = {"old evasion": read_old_set(tests / "data" / "safety_evasion.txt", "block"),
            "old benign": read_old_set(tests / "data" / "safety_benign.txt", "pass"),
            "blocked": read_set(tests / "safety_eval" / "blocked.jsonl", "block"),
            "benign": read_set(tests / "safety_eval" / "benign.jsonl", "pass"),
            "held-out": read_set(tests / "safety_eval" / "heldout.jsonl"),
            "held-out 2": read_set(tests / "safety_eval" / "heldout2.jsonl"),
            "held-out 3": read_set(tests / "safety_eval" / "heldout3.jsonl"),
            "held-out 4": read_set(tests / "safety_eval" / "heldout4.jsonl"),
            "held-out 5": read_set(tests / "safety_eval" / "heldout5.jsonl"),
            "held-out 6": read_set(tests / "safety_eval" / "heldout6.jsonl"),
            "held-out 7": read_set(tests / "safety_eval" / "heldout7.jsonl"),
            "held-out 8": read_set(tests / "safety_eval" / "heldout8.jsonl"),
            "dev": read_set(tests / "safety_dev" / "dev.jsonl")}
    for path in sorted((tests / "safety_dev").glob("*.jsonl")):
        if path.stem != "dev":  # the blind and everyday tuning sets
            sets[f"dev {path.stem}"] = read_set(path)
    for path in sorted((tests / "safety_eval").glob("everyday*.jsonl")):  # everyday prompts, measure only
        sets[path.stem.replace("_", " ")] = read_set(path, "pass")
    return sets


def read_set(path: Path, expect: str | None = None) -> list[dict]:
    """The cases of one JSON-lines set, each with its "expect"; the rule line is skipped."""
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        case = json.loads(line)
        if "rule" in case and "prompt" not in case:
            continue
        case.setdefault("expect", expect)
        if case["expect"] not in ("block", "pass"):
            raise ValueError(f"{path.name}: a case without a block/pass expectation")
        cases.append(case)
    return cases


def read_old_set(path: Path, expect: str) -> list[dict]:
    """The cases of an old text set (prompt || negative || style template || style negative a line, with \\uXXXX
    escapes), in English, each style applied as the engine applies one."""
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            line = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), line)
            fields = [field.strip() for field in line.split("||")] + ["", "", ""]
            prompt = fields[2].replace("{prompt}", fields[0]) if fields[2] else fields[0]
            negative = fields[3].replace("{prompt}", fields[1]) if "{prompt}" in fields[3] else \
                ", ".join(part for part in (fields[1], fields[3]) if part)
            cases.append({"prompt": prompt, "negative": negative, "category": "old", "language": "en",
                          "expect": expect})
    return cases


def refused_by(gate) -> Callable[[dict], bool]:
    """Whether the gate (a SafetyGate) refuses a case's prompt and negative prompt: the `flags` of `rates`."""

    def refused(case: dict) -> bool:
        try:
            gate.check_prompts(case["prompt"], case.get("negative", ""))
        except PromptRefused:
            return True
        return False
    return refused


def rates(cases: list[dict], flags: Callable[[dict], bool]) -> dict:
    """Per expectation ("block": share flagged; "pass": share let through): overall, per category, per language,
    per trick (how a prompt hides its words: plain, euphemism, script, spacing)."""
    counts: dict = defaultdict(lambda: [0, 0])  # key -> [right, total]
    for case in cases:
        right = flags(case) == (case["expect"] == "block")
        for key in (("all",), ("category", case.get("category") or "none"),
                    ("language", case.get("language") or "?"), ("trick", case.get("trick") or "plain")):
            counts[(case["expect"], *key)][0] += right
            counts[(case["expect"], *key)][1] += 1
    result: dict = {}
    for (expect, *key), (right, total) in sorted(counts.items()):
        row = {"right": right, "total": total, "rate": round(right / total, 4)}
        if key == ["all"]:
            result.setdefault(expect, {})["all"] = row
        else:
            result.setdefault(expect, {}).setdefault(key[0], {})[key[1]] = row
    return result


def table(name: str, result: dict) -> str:
    """The rates as printable lines: blocked (flagged) and benign (passed), overall and per group."""
    lines = []
    for expect, word in (("block", "blocked"), ("pass", "passed")):
        if expect not in result:
            continue
        overall = result[expect]["all"]
        lines.append(f"{name}: {word} {overall['right']}/{overall['total']} ({overall['rate']:.1%})")
        for group in ("category", "language", "trick"):
            cells = [f"{key} {row['right']}/{row['total']}" for key, row in result[expect].get(group, {}).items()]
            lines.append(f"  {word} per {group}: " + ", ".join(cells))
    return "\n".join(lines)
