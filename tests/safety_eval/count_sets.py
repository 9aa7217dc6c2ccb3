"""Print the per-category, per-language and per-trick counts of the safety eval sets as Markdown tables.

Run: .venv/bin/python tests/safety_eval/count_sets.py  (the README's count tables are this script's output)
"""
import collections
import json
from pathlib import Path

HERE = Path(__file__).parent
LANGUAGES = ["en", "es", "fr", "de", "pt", "it", "ru", "ja", "zh", "ko"]
CATEGORIES = ["sexual", "sexual_minors", "violence_gore", "hate", "self_harm", "none"]


def load_rows(name):
    """Return the prompt rows of one set, without heldout's rule line."""
    lines = (HERE / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [row for row in map(json.loads, lines) if "prompt" in row]


def table(title, rows):
    """Render a category x language table with totals."""
    counts = collections.Counter((row["category"], row["language"]) for row in rows)
    out = [f"**{title}** ({len(rows)} prompts)", "",
           "| category | " + " | ".join(LANGUAGES) + " | total |",
           "|---|" + "---:|" * (len(LANGUAGES) + 1)]
    for category in CATEGORIES:
        total = sum(counts[category, lang] for lang in LANGUAGES)
        if total:
            out.append(f"| {category} | " + " | ".join(str(counts[category, lang]) for lang in LANGUAGES) + f" | {total} |")
    per_lang = collections.Counter(row["language"] for row in rows)
    out.append("| **all** | " + " | ".join(str(per_lang[lang]) for lang in LANGUAGES) + f" | {len(rows)} |")
    tricks = collections.Counter(row["trick"] for row in rows)
    out += ["", "tricks: " + ", ".join(f"{trick} {n}" for trick, n in sorted(tricks.items())), ""]
    return "\n".join(out)


def main():
    print(table("blocked.jsonl", load_rows("blocked")))
    print(table("benign.jsonl", load_rows("benign")))
    for name in ("heldout", "heldout2", "heldout3", "heldout4", "heldout5", "heldout6", "heldout7", "heldout8"):
        rows = load_rows(name)
        for expect in ("block", "pass"):
            print(table(f"{name}.jsonl, expect={expect}", [r for r in rows if r["expect"] == expect]))


if __name__ == "__main__":
    main()
