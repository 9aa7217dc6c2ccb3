"""Text normalisation against evasion: what a prompt says once its disguises are taken off.

Two readings of a prompt, both built from `native`:
- `native`: Unicode NFKC (full-width, half-width katakana, mathematical and circled letters), dropping format and
  invisible characters (zero-width spaces and joiners, soft hyphens, Hangul fillers, braille blanks), case
  folding, dropping combining marks (nüde, Zalgo text; the kana voicing marks stay, so ば stays ば, and so does
  the breve of Russian й), and folding
  the letter forms NFKC leaves alone (small capitals, regional indicators, negative circled/squared and
  parenthesised letters, barred and hooked letters such as ø, ł, ɴ, ᴀ) to their plain Latin letter. Scripts
  stay: Russian, Japanese, Chinese and Korean words are matched on this reading; Latin look-alikes inside a
  Cyrillic word (Latin "c" in "секс") are read as the Cyrillic letters they imitate.
- `readable`: the native reading with confusable characters mapped to the Latin letters they imitate
  (Unicode's confusables data from UTS #39, shipped by confusable-homoglyphs): "nаked" with a Cyrillic "а".
Then, for matching Latin-script words, a coarser fold: leetspeak digits and symbols to letters, look-alike
letters to one class (l, 1, |, ! -> i); letters repeated three or more times are read both as one and as two
("nuuude", "boooobs"), never shorter words ("nigger" must not become "Niger").
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from importlib.resources import files

LEET = str.maketrans({"0": "o", "1": "i", "!": "i", "|": "i", "l": "i", "3": "e", "€": "e", "4": "a", "@": "a",
                      "5": "s", "$": "s", "7": "t", "+": "t", "8": "b", "9": "g"})
# the same without reading "l" as "i": for everyday context words, where it makes other words ("sala" as "saia")
LEET_STRICT = str.maketrans({k: v for k, v in LEET.items() if k != ord("l")})
LEET_SYMBOLS = "!|€@$+"
DIGIT_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                            "@": "a", "$": "s", "!": "i"})
WORD = re.compile(r"[a-z]+")
STRETCHED = re.compile(r"(.)\1\1+")  # a letter written three or more times
OTHER_LETTER = re.compile(r"[^\W\d_a-z]")  # a letter outside a-z (the text is folded to plain Latin first)


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


# invisible characters that are letters or symbols by category, so dropping format characters (Cf) misses them
INVISIBLE = dict.fromkeys(map(ord, "\u115f\u1160\u3164\uffa0\u2800\u180e"), None)
KANA_VOICING = ("\u3099", "\u309a")
CYRILLIC_SHORT_MARK = "\u0306"  # the breve of й, a letter of its own in Russian ("голой" is not "голои")
# Unicode names of letter forms NFKC does not fold, with the plain letter as group 1
LETTER_FORM_NAMES = re.compile(
    r"LATIN LETTER SMALL CAPITAL ([A-Z])|(?:NEGATIVE )?(?:CIRCLED|SQUARED|PARENTHESIZED) LATIN (?:CAPITAL|SMALL) "
    r"LETTER ([A-Z])|REGIONAL INDICATOR SYMBOL LETTER ([A-Z])|MODIFIER LETTER (?:CAPITAL|SMALL) ([A-Z])|"
    r"LATIN (?:CAPITAL|SMALL) LETTER ([A-Z]) WITH .*|LATIN (?:SUBSCRIPT )?(?:CAPITAL|SMALL) LETTER "
    r"(?:TURNED |REVERSED |SCRIPT |DOTLESS |OPEN |BARRED |LONG )?([A-Z])")
# the blocks that hold Latin letter forms: Latin-1 to Latin Extended Additional, letterlike and enclosed
# alphanumerics, Latin Extended-C/D/E, half/full-width forms, the enclosed alphanumeric supplement
LATIN_BLOCKS = ((0x80, 0x2000), (0x2100, 0x2500), (0x2C60, 0x2C80), (0xA720, 0xA800), (0xAB30, 0xAB70),
                (0xFF00, 0xFFF0), (0x1F100, 0x1F200))
# Latin letters that look like Cyrillic ones, read as Cyrillic inside a word that has Cyrillic letters
LATIN_TO_CYRILLIC = str.maketrans("aceopxykmthb", "асеорхукмтнв")
CYRILLIC_WORD = re.compile(r"\w*[\u0400-\u04ff]\w*")


@functools.lru_cache(maxsize=1)
def letter_forms() -> dict[int, str]:
    """Each non-ASCII Latin letter form (ᴀ, 🅽, 🇳, ⒩, ø, ɴ, é) -> its plain lower-case letter."""
    table = {}
    for code in (c for start, end in LATIN_BLOCKS for c in range(start, end)):
        match = LETTER_FORM_NAMES.fullmatch(unicodedata.name(chr(code), ""))
        if match:
            table[code] = next(g for g in match.groups() if g).lower()
    return table


# Hangul compatibility letters (the jamo a keyboard types alone: ㅅㅔㄱㅅㅡ), in the order of the syllable table
JAMO_INITIALS = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
JAMO_VOWELS = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"
JAMO_FINALS = " ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"
JAMO_SYLLABLE = re.compile(f"([{JAMO_INITIALS}])([{JAMO_VOWELS}])([{JAMO_FINALS[1:]}](?![{JAMO_VOWELS}]))?")


def hangul_from_jamo(text: str) -> str:
    """Hangul spelled letter by letter in compatibility jamo, as syllables ("ㅅㅔㄱㅅㅡ" -> "섹스"); a consonant with
    no vowel after it stays a letter (the abbreviations ㅋㅋ, ㅅㅅ)."""
    def syllable(m: re.Match) -> str:
        initial, vowel = JAMO_INITIALS.index(m.group(1)), JAMO_VOWELS.index(m.group(2))
        final = JAMO_FINALS.index(m.group(3)) if m.group(3) else 0
        return chr(0xAC00 + (initial * 21 + vowel) * 28 + final)
    return JAMO_SYLLABLE.sub(syllable, text)


def undisguised(text: str) -> str:
    """NFKC, no invisible characters or marks, case-folded, plain letters; homoglyphs still in their script."""
    # letter forms first: NFKC would turn ⒩ into "(n)"; Hangul jamo before NFKC makes lone initials of them
    text = unicodedata.normalize("NFKC", hangul_from_jamo(text.translate(letter_forms()))).translate(INVISIBLE)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").casefold()
    kept, base = [], ""
    for c in unicodedata.normalize("NFD", text):
        if not unicodedata.combining(c):
            base = c
        if not unicodedata.combining(c) or c in KANA_VOICING or (c == CYRILLIC_SHORT_MARK and base == "и"):
            kept.append(c)
    text = "".join(kept)
    return unicodedata.normalize("NFC", text.translate(letter_forms()))  # again: NFKC made some (ｎ̸)


def native(text: str) -> str:
    """The text in its own script, undisguised, with Latin look-alikes inside Cyrillic words read as Cyrillic."""
    return CYRILLIC_WORD.sub(lambda m: m.group(0).translate(LATIN_TO_CYRILLIC).replace("ё", "е"),
                             undisguised(text))


# Greek lower-case letters that pass for Latin ones in most fonts but that Unicode's confusables data does not pair
# with them (it pairs the capitals: Ν with N, but casefolded Ν is ν, which it pairs with v)
GREEK_LOOKALIKES = {"ε": "e", "η": "n", "κ": "k", "τ": "t", "χ": "x", "ω": "w", "ς": "c", "β": "b", "μ": "u",
                    "δ": "d"}
# Cyrillic lower-case letters shaped like Latin small capitals or letters (к, м, т, н, в, г, п, ш), read as Latin
# only inside a word that has Latin letters too ("nакеd"): a word all in Cyrillic is Russian
CYRILLIC_AMONG_LATIN = {"к": "k", "м": "m", "т": "t", "н": "h", "в": "b", "г": "r", "п": "n", "ш": "w"}
GREEK_CAPITALS = re.compile(r"[\u0391-\u03a9]")


def readable(text: str) -> str:
    """The text as a reader of Latin script sees it: undisguised, with homoglyphs as Latin letters."""
    mapping = {**confusables_to_ascii(), **GREEK_LOOKALIKES}
    # Greek capitals read as the Latin capitals they imitate before case folding makes other letters of them
    text = GREEK_CAPITALS.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)

    def as_latin(word: re.Match) -> str:
        # a Cyrillic word with a letter that imitates no Latin one ("прыгают") is Russian, not a disguise
        if CYRILLIC_WORD.fullmatch(word.group(0)) and not re.search(r"[a-z]", word.group(0)) and any(
                "\u0400" <= c <= "\u04ff" and c not in mapping for c in word.group(0)):
            return word.group(0)
        extra = CYRILLIC_AMONG_LATIN if re.search(r"[a-z]", word.group(0)) else {}
        return "".join(mapping.get(c, extra.get(c, c)) for c in word.group(0))
    return unicodedata.normalize("NFC", re.sub(r"\S+", as_latin, undisguised(text)))


def fold(word: str, look_alikes: bool = True) -> str:
    """The coarse matching form of a word: leetspeak decoded and look-alike letters merged (l, 1, |, ! -> i;
    without `look_alikes`, "l" stays "l")."""
    return word.translate(LEET if look_alikes else LEET_STRICT)


@functools.lru_cache(maxsize=8192)  # each word of a prompt is looked up in every section
def spellings(word: str) -> frozenset[str]:
    """A folded word as written and with its runs of 3+ repeated letters read as one and as two letters."""
    if not STRETCHED.search(word):
        return frozenset((word,))
    return frozenset((word, STRETCHED.sub(r"\1", word), STRETCHED.sub(r"\1\1", word)))


def tokens(text: str, symbols_are_letters: bool = True, look_alikes: bool = True) -> list[str]:
    """Folded words of readable text (see `fold`); leet symbols count as letters, or (second reading) as
    separators."""
    if not symbols_are_letters:
        text = text.translate({ord(c): " " for c in LEET_SYMBOLS})
    return WORD.findall(fold(text, look_alikes))


def joined_letters(words: list[str], article: bool = False, tail: frozenset[str] = frozenset()) -> list[str]:
    """The words with each run of three or more one-letter words joined into one ("p o g r o m" -> "pogrom");
    with `article`, a run's first letter stays apart when it is the article "a" ("a h.i.t.l.e.r"); a run's last
    letter stays apart when it is in `tail` (a one-letter preposition: "м и н е т в подъезде")."""
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            run.append(word)
            continue
        head = run[:1] if article and run[:1] == ["a"] and len(run) >= 4 else []
        run = run[len(head):]
        end = run[-1:] if run[-1:] and run[-1] in tail and len(run) >= 4 else []
        run = run[:len(run) - len(end)]
        joined += head + (["".join(run)] if len(run) >= 3 else run) + end
        run = []
        joined.append(word)
    return joined[:-1]


def stretch_words(text: str, look_alikes: bool = True) -> list[str]:
    """The folded words of readable text with spaced-out letters joined within each stretch apart by two or more
    spaces ("t u e z   l e s   a r a b e s" -> "tuez", "les", "arabes"), not across them."""
    return [w for part in re.split(r"\s{2,}", text) for w in joined_letters(tokens(part, look_alikes=look_alikes))]


def joined_chunks(text: str) -> list[str]:
    """Whitespace-separated chunks made of several pieces, folded and joined ('n.u-d_e' -> 'nude'); a chunk
    with letters of another script is a word of that script, not Latin pieces ("гена" is not "re" + "a")."""
    pieces = (WORD.findall(chunk.translate(LEET)) for chunk in text.split() if not OTHER_LETTER.search(chunk))
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
