"""Text normalisation against evasion: what a prompt says once its disguises are taken off.

Steps, in order: Unicode NFKC (full-width and mathematical letters), dropping format characters (zero-width
spaces and joiners, soft hyphens), case folding, dropping combining marks (nüde), mapping confusable
characters to the Latin letters they imitate (Unicode's confusables data from UTS #39, shipped by
confusable-homoglyphs), then for matching a coarser fold: leetspeak digits and symbols to letters,
look-alike letters to one class (l, 1, |, ! -> i); letters repeated three or more times are read both as
one and as two ("nuuude", "boooobs"), never shorter words ("nigger" must not become "Niger").
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from importlib.resources import files

LEET = str.maketrans({"0": "o", "1": "i", "!": "i", "|": "i", "l": "i", "3": "e", "€": "e", "4": "a", "@": "a",
                      "5": "s", "$": "s", "7": "t", "+": "t", "8": "b", "9": "g"})
LEET_SYMBOLS = "!|€@$+"
DIGIT_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                            "@": "a", "$": "s", "!": "i"})
WORD = re.compile(r"[a-z]+")


@functools.lru_cache(maxsize=1)
def confusables_to_ascii() -> dict[str, str]:
    """Each non-ASCII character that Unicode lists as confusable with ASCII letters or digits -> those."""
    table = json.loads(files("confusable_homoglyphs").joinpath("confusables.json").read_text(encoding="utf-8"))
    mapping = {}
    for char, lookalikes in table.items():
        if len(char) != 1 or char.isascii():
            continue
        targets = [entry["c"] for entry in lookalikes if entry["c"].isascii() and entry["c"].isalnum()]
        if targets:
            mapping[char] = min(targets, key=len).lower()  # prefer one letter ('m' over 'rn')
    return mapping


def readable(text: str) -> str:
    """The text as a reader sees it: NFKC, no format characters, case-folded, no accents, no homoglyphs."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").casefold()
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    mapping = confusables_to_ascii()
    return unicodedata.normalize("NFC", "".join(mapping.get(c, c) for c in text))


def fold(word: str) -> str:
    """The coarse matching form of a word: leetspeak decoded and look-alike letters merged (l, 1, |, ! -> i)."""
    return word.translate(LEET)


def spellings(word: str) -> set[str]:
    """A folded word as written and with its runs of 3+ repeated letters read as one and as two letters."""
    return {word, re.sub(r"(.)\1\1+", r"\1", word), re.sub(r"(.)\1\1+", r"\1\1", word)}


def tokens(text: str, symbols_are_letters: bool = True) -> list[str]:
    """Folded words of readable text; leet symbols count as letters, or (second reading) as separators."""
    if not symbols_are_letters:
        text = text.translate({ord(c): " " for c in LEET_SYMBOLS})
    return WORD.findall(text.translate(LEET))


def joined_chunks(text: str) -> list[str]:
    """Whitespace-separated chunks made of several pieces, folded and joined ('n.u-d_e' -> 'nude')."""
    pieces = (WORD.findall(chunk.translate(LEET)) for chunk in text.split())
    return ["".join(p) for p in pieces if len(p) > 1]


def masked_chunks(text: str) -> list[str]:
    """Words that hide letters behind '*', '#' or '_' ('p*rn', 'n__de'), as regex patterns ('p.rn')."""
    found = []
    for chunk in text.split():
        core = chunk.strip(".,;:()[]{}\"'")
        if re.fullmatch(r"[a-z0-9@$!|€+]+(?:[*#_]+[a-z0-9@$!|€+]*)+", core):
            found.append("".join("." if c in "*#_" else re.escape(c) for c in fold(core)))
    return found


def plain_words(text: str) -> str:
    """Readable text with leetspeak decoded inside words and spaced-out letters joined, for the classifier."""
    words = [w.translate(DIGIT_LEET) if re.search(r"[a-z]", w) else w for w in text.split()]
    # join runs of single letters: "f u c k" -> "fuck"
    return re.sub(r"\b(?:[a-z] ){2,}[a-z]\b", lambda m: m.group(0).replace(" ", ""), " ".join(words))
