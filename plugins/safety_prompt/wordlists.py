"""The word lists of terms.txt, folded into the matching form, and the rules that use them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .normalize import fold, spellings

TERMS_FILE = Path(__file__).resolve().parent / "terms.txt"
SECTIONS = ("block", "minor", "suggestive", "clothing", "remove", "allow")
PLURALS = ("s", "es")
REMOVAL_REACH = 3  # words after "without"/"no"/"removing" that a clothing word may be


@dataclass
class Terms:
    """One section of the lists: exact words (with plurals), prefixes, and phrases, all folded."""

    words: set[str] = field(default_factory=set)
    prefixes: tuple[str, ...] = ()
    phrases: list[tuple[str, ...]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # entries as written, for matching unfolded text

    def add(self, entry: str) -> None:
        """Add one entry as written in terms.txt."""
        self.written.append(entry)
        parts = [fold(p) for p in entry.split()]
        if len(parts) > 1:
            self.phrases.append(tuple(parts))
            entry = "".join(parts)  # written together it is one word
        else:
            entry = parts[0]
        if entry.endswith("*"):
            self.prefixes += (entry[:-1],)
        else:
            self.words.update([entry] + [entry + suffix for suffix in PLURALS])

    def matches(self, word: str) -> bool:
        """Whether one folded word (in any of its spellings) is in this section."""
        return any(s in self.words or s.startswith(self.prefixes) for s in spellings(word)) if word else False

    def within(self, letters: str) -> str | None:
        """A term hidden inside a run of letters (spaced-out single letters joined), if any."""
        for s in spellings(letters):
            for term in self.words:
                if len(term) >= 3 and term in s:
                    return term
            for prefix in self.prefixes:
                if prefix in s:
                    return prefix
        return None

    def phrase_at(self, words: list[str], i: int) -> tuple[str, ...] | None:
        """The phrase starting at word i, if one does."""
        for phrase in self.phrases:
            if tuple(words[i:i + len(phrase)]) == phrase:
                return phrase
        return None


def load_terms(path: Path = TERMS_FILE) -> dict[str, Terms]:
    """Each section of the lists file; an unknown section is an error, not a silently ignored list."""
    sections = {name: Terms() for name in SECTIONS}
    current = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if re.fullmatch(r"\[\w+\]", line):
            current = line[1:-1]
            if current not in sections:
                raise ValueError(f"{path.name}:{number}: unknown section [{current}]")
        elif current is None:
            raise ValueError(f"{path.name}:{number}: a term before the first [section]")
        else:
            sections[current].add(line)
    return sections
