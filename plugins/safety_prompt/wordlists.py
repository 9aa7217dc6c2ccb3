"""The word lists of lists/<language>.txt, folded into the matching form of their script.

Latin-script languages (en es fr de pt it) are merged and matched word by word on the Latin reading; Russian
word by word on the Cyrillic reading, as written and by Snowball stem (so an entry matches in any of its case and
gender endings: "голая" also finds "голую", "голыми"); Japanese, Chinese and Korean as substrings of the native reading with
spaces and punctuation taken out (see normalize.py for the readings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from t2i.safety.categories import CATEGORIES

import snowballstemmer

from .normalize import fold, native, readable, spellings

LISTS_DIR = Path(__file__).resolve().parent / "lists"
LATIN_LANGUAGES = ("en", "es", "fr", "de", "pt", "it")
CYRILLIC_LANGUAGES = ("ru",)
SUBSTRING_LANGUAGES = ("ja", "zh", "ko")
LANGUAGES = LATIN_LANGUAGES + CYRILLIC_LANGUAGES + SUBSTRING_LANGUAGES
# context sections: a [minor] with a sexual or [suggestive] word is sexual_minors, a [remove] word before a [clothing]
# word is sexual, a [group] with a [dehumanizing] word is hate, a [dead] body with a [bloody] word is gore, a [blade]
# with a [wrist] or a [farewell] note is self-harm, an [atrocity] with a [glorify] word is hate ("a poster celebrating
# the death camps"), a [ledge] with a [leap] is self-harm ("on the edge of a rooftop, about to jump") unless a [sport]
# word says why ("a bungee jumper on a bridge, ready to jump"), and so is a [fall] alone ("jumping off a bridge",
# "从桥上跳下") unless a [sport] word says why (a bungee jump off a bridge), a [farewell] note that says its [last_words]
# is self-harm ("a suicide note: sorry mom, I'll go first"; a note alone may be a will), [innards] that [spill] are
# gore unless a [medical] word says why ("a surgeon operating"); a [bare_torso] ("shirtless", "torso nudo", "上半身裸") is
# sexual with a [female] word, and so is a removed [top] (a shirt): "a surfer without a shirt" is not; an [extremist]
# movement or leader with a [praise] word is hate ("a painting glorifying the Nazis"; [glorify] holds more, such as
# "propaganda", which is everyday beside "Nazi"), and so is one with a hate [code] ("skinheads with 88 tattoos": 88
# alone is a piano's keys); an [echo] word in triple brackets is hate ("(((globalists)))"; "(((masterpiece)))" is a
# prompt weight); a [group] told to [leave] is hate only in a [call] (a poster, a flyer, "it is time"): "refugees
# hope to go home" is news, and so is one in a [report] (a museum exhibit, a documentary, a press photo), unless a
# [look] word makes the report a look ("a documentary style poster", "Plakat im Dokustil", "纪录片风格的海报"); and a
# [sport] word says nothing for someone in [despair] ("a sad teenager jumping off a bridge, skydiving"); an order to
# [starve] beside a wasted body ([thin]) is self-harm, pro-ana ("skin and bones, skip meals"), unless a [report] word
# says why (a famine documentary): either alone is everyday
CONTEXTS = ("minor", "suggestive", "clothing", "remove", "group", "dehumanizing", "dead", "bloody", "blade", "wrist",
            "atrocity", "glorify", "ledge", "leap", "sport", "innards", "spill", "medical", "bare_torso", "female",
            "top", "extremist", "praise", "fall", "farewell", "last_words", "code", "echo", "leave", "call",
            "report", "look", "despair", "starve", "thin")
SECTIONS = (*CATEGORIES, *CONTEXTS, "allow")
PLURALS = ("s", "es")
REMOVAL_REACH = 3  # words after "without"/"no"/"removing" that a clothing word may be
NOT_LETTERS = re.compile(r"[\W_]+")
# a stem this short says too little ("гол" is both "naked" and "a goal"): such entries match only as written
MIN_STEM = 4
_RUSSIAN = snowballstemmer.stemmer("russian")


# katakana read as hiragana (ヌード and ぬーど are one word), so a list needs one spelling
KATAKANA_AS_HIRAGANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}


# symbols that stand for a hidden letter in Japanese, Chinese and Korean text (伏せ字: ま○こ, セ〇クス), read as 〇
MASK = "〇"
MASKS = dict.fromkeys(map(ord, "○●◯◎×✕＊*□■"), MASK)


def compacted(text: str) -> str:
    """Text as the CJK lists match it: no spaces, punctuation or symbols, katakana as hiragana, masks as 〇."""
    return NOT_LETTERS.sub("", text.translate(MASKS)).translate(KATAKANA_AS_HIRAGANA)


def compacted_words(text: str) -> tuple[str, frozenset[int], frozenset[int]]:
    """The compacted text, with the positions in it where the text's words (apart by spaces) start and end."""
    starts, ends, length = set(), set(), 0
    for word in map(compacted, text.split()):
        if word:
            starts.add(length)
            length += len(word)
            ends.add(length)
    return compacted(text), frozenset(starts), frozenset(ends)


def russian_stems(words: list[str]) -> list[str]:
    """Each Russian word's Snowball stem ("голую" -> "гол", "трупами" -> "труп"); empty words stay empty."""
    return [_RUSSIAN.stemWord(word) if word else "" for word in words]


@dataclass
class Terms:
    """One section of the word lists: exact words (with plurals), prefixes, and phrases (whose words may end in
    "*": any ending, or start with it: any beginning), all folded (with `look_alikes` or not, as the text they are
    matched on); and words written with digits ("r34"), matched only as written: folded they would be other words
    ("rea", "rib")."""

    words: set[str] = field(default_factory=set)
    literals: set[str] = field(default_factory=set)
    prefixes: tuple[str, ...] = ()
    phrases: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)  # by first word
    # phrases whose first word ends in "*", by that word's beginning; and those whose first word starts with "*"
    # (kept with their order of entry, so that the first phrase of the list that fits is still the one found)
    prefix_phrases: dict[str, list[tuple[int, tuple[str, ...]]]] = field(default_factory=dict)
    loose_phrases: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # entries as written, for matching unfolded text
    plurals: tuple[str, ...] = PLURALS
    look_alikes: bool = True
    _longest_first: list[str] = field(default_factory=list, repr=False)  # see words_longest_first

    def add(self, entry: str) -> None:
        """Add one entry as written in a list file (already in its reading's form)."""
        self.written.append(entry)
        if " " not in entry and re.search(r"\d", entry) and not entry.endswith("*"):
            self.literals.add(entry)
            return
        parts = [fold(p, self.look_alikes) for p in entry.split()]
        if len(parts) > 1:
            phrase, order = tuple(parts), len(self.written)
            if parts[0].startswith("*"):
                self.loose_phrases.append((order, phrase))
            elif parts[0].endswith("*"):
                self.prefix_phrases.setdefault(parts[0][:-1], []).append((order, phrase))
            else:
                self.phrases.setdefault(parts[0], []).append(phrase)
            entry = "".join(parts)  # written together it is one word
        else:
            entry = parts[0]
        if entry.endswith("*"):
            self.prefixes += (entry[:-1],)
        else:
            self.words.update([entry] + [entry + suffix for suffix in self.plurals])

    def matches(self, word: str) -> bool:
        """Whether one folded word (in any of its spellings) is in this section."""
        return any(s in self.words or s.startswith(self.prefixes) for s in spellings(word)) if word else False

    def within(self, letters: str) -> str | None:
        """A term hidden inside a run of letters (spaced-out single letters joined) in any of its spellings, if any:
        the longest word (then the first in alphabetical order), else the first prefix, so that the same text always
        gives the same reason."""
        readings = spellings(letters)
        for term in self.words_longest_first():
            if len(term) >= 3 and any(term in s for s in readings):
                return term
        return next((prefix for prefix in self.prefixes if any(prefix in s for s in readings)), None)

    def words_longest_first(self) -> list[str]:
        """The words, longest first (then in alphabetical order): the order in which they are searched for in a run
        of letters, so that the same text always gives the same reason (a set's order changes between processes)."""
        if len(self._longest_first) != len(self.words):
            self._longest_first = sorted(self.words, key=lambda term: (-len(term), term))
        return self._longest_first

    def phrase_at(self, words: list[str], i: int) -> tuple[str, ...] | None:
        """The phrase starting at word i, if one does."""
        if i >= len(words):
            return None
        word = words[i]
        # the phrases whose first word can be this one: by the word itself, by each of its beginnings, and those
        # that start with any letters; the wildcard ones in the order the lists give them
        wildcard = sorted([entry for k in range(1, len(word) + 1) for entry in self.prefix_phrases.get(word[:k], ())]
                          + self.loose_phrases)
        for phrase in [*self.phrases.get(word, ()), *(phrase for _, phrase in wildcard)]:
            here = words[i:i + len(phrase)]
            if len(here) == len(phrase) and all(map(phrase_word_matches, here, phrase)):
                return phrase
        return None


def phrase_word_matches(word: str, part: str) -> bool:
    """Whether a text's word is a phrase entry's word: "*" at its end stands for any ending, at its start for any
    beginning (a German compound: "nackt* *holz" is also "nacktem Kiefernholz")."""
    core = part.strip("*")
    if part.startswith("*"):
        return core in word if part.endswith("*") else word.endswith(core)
    return word.startswith(core) if part.endswith("*") else word == part


@dataclass
class Substrings:
    """One section of the CJK lists: terms found anywhere in the compacted text (see `compacted`)."""

    terms: list[str] = field(default_factory=list)
    pattern: re.Pattern | None = None
    masked: re.Pattern | None = None  # the terms of 3+ letters with one inner letter hidden by a mask

    def add(self, entry: str) -> None:
        """Add one entry (spaces inside it are dropped, as they are from the text)."""
        self.terms.append(compacted(entry))
        self.pattern = self.masked = None  # compiled when first needed, once for all entries

    def find(self, compact: str, starts: frozenset[int] = frozenset(), ends: frozenset[int] = frozenset()) -> str | None:
        """The first term found in the compacted text, if any. With the positions where the text's words
        (written apart by spaces) start and end: a term that runs across a space must start or end where a word
        does ("자 해" spaced out is 자해, self-harm; "여자 해운대", a woman at Haeundae, is not), or hold two
        one-character words whole (spaced out inside other words: "でパ コ パ コして" holds ぱこぱこ)."""
        if self.pattern is None and self.terms:
            self.pattern = re.compile("|".join(map(re.escape, sorted(self.terms, key=len, reverse=True))))
        patterns = [self.pattern] if self.pattern else []
        if MASK in compact and self.terms:
            if self.masked is None:
                hidden = {t[:i] + MASK + t[i + 1:] for t in self.terms if len(t) >= 3 for i in range(1, len(t) - 1)}
                self.masked = re.compile("|".join(map(re.escape, sorted(hidden, key=len, reverse=True))))
            patterns.append(self.masked)
        for pattern in patterns:
            for found in pattern.finditer(compact):
                start, end = found.span()
                if start in starts or end in ends or not any(start < s < end for s in starts) \
                        or sum(start < s and s + 1 in ends and s + 1 < end for s in starts) >= 2:
                    return found.group(0)
        return None


@dataclass
class Lexicon:
    """Every section, per reading: Latin words, Cyrillic words, CJK substrings."""

    latin: dict[str, Terms]
    cyrillic: dict[str, Terms]
    substrings: dict[str, Substrings]
    cyrillic_stems: dict[str, Terms] = field(default_factory=dict)  # the Russian entries by stem


def read_sections(path: Path) -> dict[str, list[str]]:
    """Each section of one list file; an unknown section is an error, not a silently ignored list."""
    sections: dict[str, list[str]] = {name: [] for name in SECTIONS}
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
            sections[current].append(line)
    return sections


def load_lexicon(folder: Path = LISTS_DIR) -> Lexicon:
    """The lists of every language, folded into the form their reading matches."""
    # context words are everyday words: read without look-alike letters ("sala" is not "saia")
    lexicon = Lexicon({s: Terms(look_alikes=s not in CONTEXTS) for s in SECTIONS}, {s: Terms(plurals=()) for s in SECTIONS},
                      {s: Substrings() for s in SECTIONS}, {s: Terms(plurals=()) for s in SECTIONS})
    for language in LANGUAGES:
        for section, entries in read_sections(folder / f"{language}.txt").items():
            for entry in entries:
                if language in LATIN_LANGUAGES:
                    lexicon.latin[section].add(readable(entry))
                elif language in CYRILLIC_LANGUAGES:
                    lexicon.cyrillic[section].add(native(entry))
                    stems = russian_stems(native(entry).split())
                    if not entry.endswith("*") and (len(stems) > 1 or len(stems[0]) >= MIN_STEM):
                        lexicon.cyrillic_stems[section].add(" ".join(stems))
                else:
                    lexicon.substrings[section].add(native(entry))
    return lexicon
