"""Format checks for the blind safety evaluation sets in tests/safety_eval/ (counts, labels, no overlap).

Only the files' shape is checked here; the checker's rates on them are measured elsewhere.
"""
import collections
import json
import re
import unicodedata
from pathlib import Path

import pytest

SETS = Path(__file__).parent / "safety_eval"
LANGUAGES = {"en", "es", "fr", "de", "pt", "it", "ru", "ja", "zh", "ko"}
CATEGORIES = {"sexual", "sexual_minors", "violence_gore", "hate", "self_harm"}
TRICKS = {"plain", "euphemism", "script", "spacing"}
# A line labelled with one of these languages must contain that language's script.
SCRIPT_OF = {
    "ru": re.compile(r"[\u0400-\u04ff]"),
    "ja": re.compile(r"[\u3040-\u30ff\uff66-\uff9f]"),  # hiragana, katakana, half-width katakana
    "zh": re.compile(r"[\u4e00-\u9fff]"),
    "ko": re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]"),
}

# an everyday Japanese prompt may be kanji alone (女性, 猫)
EVERYDAY_SCRIPT_OF = {**SCRIPT_OF, "ja": re.compile(r"[\u3040-\u30ff\uff66-\uff9f\u4e00-\u9fff]")}


def read_lines(name):
    """Parse every line of one set; a line that is not a JSON object fails the test."""
    rows = []
    for number, line in enumerate((SETS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        assert isinstance(row, dict), f"{name}.jsonl:{number} is not an object"
        rows.append(row)
    return rows


def prompts(name):
    """Rows of a set without the rule line of the held-out and everyday sets."""
    rows = read_lines(name)
    return rows[1:] if name.startswith(("heldout", "everyday")) else rows


def check_row(row, where, *, extra=frozenset(), scripts=SCRIPT_OF):
    assert set(row) == {"prompt", "category", "language", "trick"} | extra, where
    assert isinstance(row["prompt"], str) and row["prompt"].strip(), where
    assert row["language"] in LANGUAGES, where
    assert row["trick"] in TRICKS, where
    pattern = scripts.get(row["language"])
    assert pattern is None or pattern.search(row["prompt"]), f"{where}: no {row['language']} script in the prompt"


@pytest.mark.parametrize("name", ["heldout", "heldout2", "heldout3", "heldout4", "heldout5", "heldout6", "heldout7",
                                  "heldout8", "everyday", "everyday_short", "everyday_people", "everyday_art",
                                  "everyday_tags", "everyday_fresh"])
def test_measure_only_sets_start_with_the_rule(name):
    first = read_lines(name)[0]
    assert set(first) == {"rule"}
    assert "never used to tune" in first["rule"].lower()
    # everyday_fresh's rule (2026-12-07) says "measure only" and "never used to tune" but not who must not read it
    assert "must not read" in first["rule"] or (name == "everyday_fresh" and "measure only" in first["rule"].lower())


@pytest.mark.parametrize("name, minimum, per_language", [("blocked", 230, 15), ("benign", 550, 35)])
def test_tuning_sets_format_and_counts(name, minimum, per_language):
    rows = prompts(name)
    for number, row in enumerate(rows, 1):
        check_row(row, f"{name}.jsonl:{number}")
        if name == "blocked":
            assert row["category"] in CATEGORIES
        else:
            assert row["category"] in CATEGORIES | {"none"} and row["trick"] == "plain"
    assert len(rows) >= minimum
    languages = collections.Counter(row["language"] for row in rows)
    assert set(languages) == LANGUAGES and min(languages.values()) >= per_language, languages
    if name == "blocked":
        tricks = collections.Counter(row["trick"] for row in rows)
        assert tricks["script"] >= 30 and tricks["euphemism"] >= 30, tricks
        categories = collections.Counter(row["category"] for row in rows)
        assert categories["sexual_minors"] <= 20 and set(categories) == CATEGORIES, categories


@pytest.mark.parametrize("name, minimums", [("heldout", {"block": 100, "pass": 200}),
                                            ("heldout2", {"block": 200, "pass": 250}),
                                            ("heldout3", {"block": 200, "pass": 250}),
                                            ("heldout4", {"block": 200, "pass": 250}),
                                            ("heldout5", {"block": 200, "pass": 250}),
                                            ("heldout6", {"block": 200, "pass": 250}),
                                            ("heldout7", {"block": 200, "pass": 250}),
                                            ("heldout8", {"block": 200, "pass": 250})])
def test_heldout_format_and_counts(name, minimums):
    rows = prompts(name)
    for number, row in enumerate(rows, 2):
        check_row(row, f"{name}.jsonl:{number}", extra={"expect"})
        assert row["expect"] in {"block", "pass"}
        if row["expect"] == "block":
            assert row["category"] in CATEGORIES
        else:
            assert row["category"] in CATEGORIES | {"none"} and row["trick"] == "plain"
    for expect, minimum in minimums.items():
        chosen = [row for row in rows if row["expect"] == expect]
        assert len(chosen) >= minimum
        assert {row["language"] for row in chosen} == LANGUAGES


def test_no_prompt_is_repeated_within_or_across_sets():
    counts = collections.Counter(row["prompt"] for name in ("blocked", "benign", "heldout", "heldout2", "heldout3",
                                                             "heldout4", "heldout5", "heldout6", "heldout7", "heldout8")
                                for row in prompts(name))
    repeated = [prompt for prompt, n in counts.items() if n > 1]
    assert not repeated, repeated


# Held-out prompts that a tuning set (tests/safety_dev/) also holds, compared after NFKC and case folding: three short
# block prompts of the first held-out set were written again, independently, in blind_langs.jsonl (README says so
# and gives the held-out rate without them). A new one would make a held-out rate part tuning data.
HELD_OUT_IN_TUNING = {"heldout": 3, "heldout2": 0, "heldout3": 0, "heldout4": 0, "heldout5": 0, "heldout6": 0,
                      "heldout7": 0, "heldout8": 0}


def _folded(text):
    return unicodedata.normalize("NFKC", text).casefold().strip()


@pytest.mark.parametrize("name", sorted(HELD_OUT_IN_TUNING))
def test_held_out_prompts_are_not_in_the_tuning_sets(name):
    rows = (json.loads(line) for path in (SETS.parent / "safety_dev").glob("*.jsonl")
            for line in path.read_text(encoding="utf-8").splitlines())
    tuning = {_folded(row["prompt"]) for row in rows if "prompt" in row}  # not the rule lines
    shared = sum(_folded(row["prompt"]) in tuning for row in prompts(name))
    assert shared == HELD_OUT_IN_TUNING[name], f"{shared} prompts of {name}.jsonl are in a tuning set"  # not printed


@pytest.mark.parametrize("name, minimum", [("everyday", 500), ("everyday_short", 500), ("everyday_people", 450),
                                           ("everyday_art", 600), ("everyday_tags", 320), ("everyday_fresh", 500)])
def test_everyday_sets_format_and_counts(name, minimum):
    rows = prompts(name)
    for number, row in enumerate(rows, 2):
        check_row(row, f"{name}.jsonl:{number}", extra={"expect"}, scripts=EVERYDAY_SCRIPT_OF)
        assert row["category"] == "none" and row["trick"] == "plain" and row["expect"] == "pass"
    assert len(rows) >= minimum
    assert {row["language"] for row in rows} == LANGUAGES
    repeated = [p for p, n in collections.Counter(row["prompt"] for row in rows).items() if n > 1]
    assert not repeated, repeated


def test_the_readmes_count_tables_are_count_sets_output():
    import subprocess
    import sys

    printed = subprocess.run([sys.executable, str(SETS / "count_sets.py")], capture_output=True, text=True,
                             check=True).stdout.strip()
    readme = (SETS / "README.md").read_text(encoding="utf-8")
    assert printed in readme, "re-run tests/safety_eval/count_sets.py and paste its tables into README's Counts"
