"""The prompt checker: normalise, then find each policy category's terms in ten languages, risky combinations,
and abuse the classifier scores. It reports every category it finds (score 1.0 under the category's name);
the safety gate applies the operator's policy to them.

Matching, on the Latin reading read twice (leet symbols as letters, and as separators):
1. phrases of the [allow] lists are taken out first ("naked eye", "breast stroke", "árboles desnudos");
2. any word, phrase, two neighbouring words written apart ("po rn") or run of spaced-out letters
   ("n u d e") that is a category's term; chunks with separators inside ("n.u-d_e") and masked letters ("p*rn");
then the Russian lists word by word on the Cyrillic reading (as written, and by Snowball stem), and the Japanese, Chinese and Korean lists as
substrings of the native reading without spaces and punctuation (allowed phrases taken out first);
3. sexual_minors: a [minor] word (or an age under 18) with a sexual or [suggestive] word anywhere in the text;
4. sexual: a [remove] word followed closely by a [clothing] word ("without clothes");
5. hate: a [group] of people with a [dehumanizing] word ("immigrants are vermin"), or an [atrocity] with a
   [glorify] word ("a poster celebrating the death camps"); violence_gore: a [dead] body with a [bloody] word
   ("a corpse in a pool of blood"); self_harm: a [blade] with a [wrist] ("a razor on her wrist"), or a [ledge]
   with a [leap] ("on the edge of a rooftop, about to jump"), or a [fall] alone ("jumping off a bridge"), unless a
   [sport] word says why (bungee, diving); a [farewell] note beside a [blade] (a means) or that says its [last_words]
   ("sorry mom, I'll go first"); hate: an [extremist] word with a hate [code] written as it is ("skinheads with 88
   tattoos"), or a [group] or [echo] word in triple brackets ("(((globalists)))"), or a [group] told to [leave] in a
   [call] ("a poster: Jewish families are no longer welcome"; "refugees hope to go home" is news), unless a
   [report] word says why (a museum exhibit, a press photo);
   violence_gore: [innards] that [spill] ("intestines spilling onto the floor") unless a [medical] word says why;
   self_harm: an order to [starve] beside a wasted body ([thin]): "skin and bones, skip meals" (pro-ana), unless a
   [report] word says why (a famine documentary); a [report] written as a [look] ("a documentary style poster")
   and a [sport] beside someone in [despair] ("a sad teenager jumping off a bridge, skydiving") say nothing;
6. hate: alt-profanity-check's shipped classifier (English offensive language) at or above "profanity", on a
   prompt with at least as many English function words as those of the other Latin-script languages (with none
   of either, read without the German and Dutch articles that are English words too: "die Katze");
7. when no list found anything: the checker's own n-gram classifier (ngram.py; on by default, an operator turns it
   off with a threshold "ngram" above 1) at or above that threshold, under the category the prompt most resembles.
"""

from __future__ import annotations

import re

from t2i.plugins import PromptChecker, Verdict
from t2i.safety.categories import CATEGORIES

from .classifier import offensive_probability
from .ngram import shipped_classifier
from .normalize import (joined_chunks, joined_letters, masked_chunks, native, plain_words, readable,
                        stretch_words, tokens)
from .wordlists import REMOVAL_REACH, Lexicon, Terms, compacted_words, load_lexicon, russian_stems

# "ngram": the n-gram classifier flags at or above it (any value above 1 turns it off). On by default at 0.975, its
# threshold cross-validated on the tuning sets (model/ngram_meta.json), since its sixth round met the README's sixth
# pre-registered rule (Safety): trained also on the embedded world's captions, pattern and material words and
# ordinary prompt vocabulary (quality tags, camera words, particles), it refuses none of corpus(5000,
# seed=20261207) and corpus(2000, seed=0), nor the lead's ordinary probes ("8k", "out", "realistic" ...).
DEFAULT_THRESHOLDS = {"profanity": 0.9, "ngram": 0.975}
LIST_CATEGORIES = tuple(c for c in CATEGORIES if c != "sexual_minors") + ("sexual_minors",)
# words never joined to a neighbour: "a pen is red" must not read as a blocked word, nor "massacre des" (Rubens'
# "Massacre des Innocents") as "massacred", nor "bus en" (French and Spanish "in") as "Busen"; "de" stays joinable
# ("nu de")
FUNCTION_WORDS = frozenset("a an and as at in is it no of on or the to "
                           "des les los las del der das und et une dem den en".split())
CYRILLIC_WORD = re.compile(r"[а-яё]+")
# function words of English, and of the other Latin-script languages (those that are not English words too): the
# offensive-language classifier is English, and reads "negro" in "gato negro" (a black cat) as a slur
ENGLISH_WORDS = frozenset("a an the of in on with and is are at for to by from this that".split())
OTHER_LATIN_WORDS = frozenset("""de del la las los el un una unos con sobre y en su sus para por al
    da do dos das em um uma com pelo pela il lo gli della delle di nel nella sul sulla le les des du et avec sur
    dans une au aux der das und mit auf ein eine einem einer im vom zum zur dem ist nicht het een och og ett""".split())
# articles of German and Dutch that are English words too ("die Katze", "den", "van"): with no function word of
# either side in the prompt, the classifier reads the prompt without them ("die" made "die Oma" a threat)
SHARED_LATIN_WORDS = frozenset("die den van".split())
# an age: "12 years old", "12-year-old", "12yo", "12 años", "12 ans", "12 Jahre", "13-Jährige", "12 anni",
# "12 лет", "12歳"
AGE = re.compile(r"(\d{1,2})\s*-?\s*(?:years?\s*-?\s*old|yo|y/o|anos|ans|jahre|j[aä]hrig\w*|anni|лет|год\w*|"
                 r"歳|岁|歲|살)")
ADULT_AGE = 18
# Russian one-letter prepositions, which a run of spaced-out letters may end in (see _cyrillic_hits)
RUSSIAN_PREPOSITIONS = frozenset("вкс")
# a category found when a word of a context section and of each further section is in the text
# (category, first section, the sections also needed (none: the first alone), a section whose words call it innocent
# or None)
COMBINATIONS = (("hate", "group", ("dehumanizing",), None), ("hate", "atrocity", ("glorify",), None),
                ("violence_gore", "dead", ("bloody",), None), ("self_harm", "blade", ("wrist",), None),
                ("self_harm", "ledge", ("leap",), "sport"), ("self_harm", "fall", (), "sport"),
                ("self_harm", "blade", ("farewell",), None), ("self_harm", "last_words", ("farewell",), None),
                ("violence_gore", "innards", ("spill",), "medical"),
                ("sexual", "bare_torso", ("female",), None), ("hate", "extremist", ("praise",), None),
                ("hate", "extremist", ("code",), None), ("hate", "group", ("leave", "call"), "report"),
                ("self_harm", "starve", ("thin",), "report"))
# the exceptions that a word of another section takes back: a context named only as a style is no context ("a
# documentary style poster" reports nothing), and a sport does not explain a leap in [despair] ("a sad teenager jumping
# off a bridge, skydiving"); [medical] keeps its exception, and [sport] keeps it beside a [look] ("a diver, cinematic
# style")
EXCEPTION_TAKEN_BACK_BY = {"report": "look", "sport": "despair"}
# words in triple round brackets, the antisemitic "echo" ("(((globalists)))"), read against [group] and [echo] words;
# prompt weights use the same brackets ("(((masterpiece)))"), so no other word counts
ECHO = re.compile(r"\({3,}([^()]{1,60})\){3,}")
WORDS_AS_WRITTEN = re.compile(r"[a-z0-9]+")
# sections whose phrases are also [allow]ed (so that alone they are no sexual term): "torso nudo", "上半身裸"
KEPT_WHEN_ALLOWED = frozenset({"bare_torso"})


class PromptModeration(PromptChecker):
    """Word lists in ten languages over normalised text, plus an offensive-language and an n-gram classifier."""

    name = "prompt_moderation"
    label = "Prompt moderation"
    default_thresholds = DEFAULT_THRESHOLDS

    def __init__(self, thresholds: dict[str, float] = DEFAULT_THRESHOLDS):
        self.thresholds = dict(thresholds)
        self.lexicon: Lexicon = load_lexicon()
        # allowed phrases, their words apart or joined by a hyphen, dot, underscore or apostrophe ("dick's sporting
        # goods"); "word*" ends in any letters, "*word" starts with any (a German compound)
        allow = sorted(self.lexicon.latin["allow"].written, key=len, reverse=True)
        self._allow_pattern = re.compile(r"\b(?:" + "|".join(
            r"[\s._'’-]+".join((r"\w*" if w.startswith("*") else "") + re.escape(w.strip("*"))
                             + (r"\w*" if w.endswith("*") else "") for w in p.split())
            for p in allow) + r")\b") if allow else None
        # allowed CJK terms longest first, so that a shorter one inside a longer one ("授乳" in "胸をはだけて授乳")
        # cannot cut it when they are blanked
        self._allowed_compact = sorted(self.lexicon.substrings["allow"].terms, key=len, reverse=True)

    def check_prompt(self, text: str) -> Verdict:
        """Flag a prompt whose normalised words hit a category's lists, or that the classifier scores as abusive."""
        latin, own = readable(text), native(text)
        # the text's context words with its allowed phrases kept (a bare torso is "allowed" until a woman is named)
        full_view = self._view(latin, own)
        words, numbers = full_view[0], full_view[4]
        female = self._mentions("female", full_view)
        compact = self._compact(own)  # with its allowed phrases blanked
        found = self._latin_hits(latin, female)
        for category, reason in {**self._cyrillic_hits(own, female), **self._substring_hits(compact)}.items():
            found.setdefault(category, reason)
        cyrillic = self._cyrillic_words(own)
        # context words are read without look-alike letters, as their sections are folded (wordlists.py)
        view = (stretch_words(self._without_allowed(latin), look_alikes=False), cyrillic,
                russian_stems(cyrillic), compact, numbers)
        if "sexual_minors" not in found and self._mentions_minor(own, view) and (
                "sexual" in found or self._mentions("suggestive", view)):
            found["sexual_minors"] = "a minor in a sexual or suggestive context"
        for category, first, also_needed, unless in COMBINATIONS:
            if category not in found and self._mentions(first, full_view if first in KEPT_WHEN_ALLOWED else view) \
                    and all(self._mentions(section, view) for section in also_needed) \
                    and not (unless and self._excuses(unless, full_view)):
                found[category] = f"a [{first}] word" + "".join(f" with a [{section}] word" for section in also_needed)
        if "hate" not in found and any(
                self._mentions("group", inner) or self._mentions("echo", inner)
                for inner in (self._view(readable(bracketed), native(bracketed))
                              for bracketed in ECHO.findall(text) + ECHO.findall(latin))):
            found["hate"] = "a [group] or [echo] word in echo brackets"
        english = _english_text(words, plain_words(self._without_allowed(latin)))
        profanity = offensive_probability(english) if english else 0.0
        if profanity >= self.thresholds["profanity"]:
            found.setdefault("hate", f"offensive language (score {profanity:.2f})")
        scores = {"profanity": round(profanity, 4)}
        if self.thresholds["ngram"] <= 1:
            resemblance, category = shipped_classifier().score(text)
            scores["ngram"] = round(resemblance, 4)
            if not found and resemblance >= self.thresholds["ngram"]:
                found[category] = f"the n-gram classifier (score {resemblance:.2f}, most like {category})"
        scores = {**{c: 1.0 for c in found}, **scores}
        reason = "; ".join(f"{c}: {r}" for c, r in found.items())
        return Verdict(bool(found), reason, scores)

    # -- Latin script (en es fr de pt it), word by word
    def _without_allowed(self, text: str) -> str:
        return self._allow_pattern.sub(" ", text) if self._allow_pattern else text

    def _latin_hits(self, text: str, female: bool) -> dict[str, str]:
        found: dict[str, str] = {}
        # each reading folded, and word for word the same without look-alike letters (for the context words)
        pairs = [(tokens(text, symbols), tokens(text, symbols, look_alikes=False)) for symbols in (True, False)]
        pairs += [joined for article in (False, True) for joined in
                  ((joined_letters(folded, article), joined_letters(strict, article)) for folded, strict in pairs[:2])
                  if joined not in pairs]
        if re.search(r"\s{2,}", text):  # spaced-out words apart by wider gaps: "m a t a r   m o r o s"
            pairs.append((stretch_words(text), stretch_words(text, look_alikes=False)))
        for words, strict in pairs:
            words = self._allowed_blanked(words, self.lexicon.latin["allow"])
            for category in LIST_CATEGORIES:
                reason = found.get(category) or _word_reason(self.lexicon.latin[category], words,
                                                             allow=self.lexicon.latin["allow"])
                if reason:
                    found[category] = reason
            if "sexual" not in found and _undressing(self.lexicon.latin,
                                                     [s if w else "" for w, s in zip(words, strict)], female):
                found["sexual"] = "undressing"
        kept = self._without_allowed(text)
        # words with their digits, for entries such as "r34", also written with separators ("14/88")
        written = WORDS_AS_WRITTEN.findall(kept) + ["".join(WORDS_AS_WRITTEN.findall(c)) for c in kept.split()]
        for category in LIST_CATEGORIES:
            terms = self.lexicon.latin[category]
            if category in found:
                continue
            literal = next((w for w in written if w in terms.literals), None)
            if literal:
                found[category] = f"term ({literal})"
                continue
            chunk = next((c for c in joined_chunks(kept) if terms.matches(c)), None)
            if chunk:
                found[category] = f"term written with separators ({chunk})"
                continue
            for pattern in masked_chunks(kept):
                hit = next((t for t in (*terms.words_longest_first(), *terms.prefixes)
                            if len(t) > 2 and re.fullmatch(pattern, t)), None)
                if hit:
                    found[category] = f"term with masked letters ({hit})"
                    break
        return found

    @staticmethod
    def _allowed_blanked(words: list[str], allow: Terms) -> list[str]:
        """The words with every allowed word and phrase replaced by empty words (so it neither matches nor joins)."""
        words = list(words)
        for i in range(len(words)):
            phrase = allow.phrase_at(words, i)
            if phrase:
                words[i:i + len(phrase)] = [""] * len(phrase)
        words = ["" if allow.matches(word) else word for word in words]
        return words

    # -- Cyrillic (ru), word by word; CJK (ja zh ko), substrings
    def _cyrillic_words(self, own: str, tail: frozenset[str] = frozenset()) -> list[str]:
        # spaced-out letters are joined within each stretch of text apart by two or more spaces ("г о л а я   ж е н")
        words = [w for part in re.split(r"\s{2,}", own)
                 for w in joined_letters(CYRILLIC_WORD.findall(part), tail=tail)]
        return self._allowed_blanked(words, self.lexicon.cyrillic["allow"])

    def _cyrillic_hits(self, own: str, female: bool) -> dict[str, str]:
        words = self._cyrillic_words(own)
        if not any(words):
            return {}
        # a second reading when spaced-out letters end in a preposition of the next word ("м и н е т в подъезде")
        apart = self._cyrillic_words(own, RUSSIAN_PREPOSITIONS)
        readings = [(reading, russian_stems(reading)) for reading in ([words, apart] if apart != words else [words])]
        found = {}
        for category in LIST_CATEGORIES:
            for reading, stems in readings:
                reason = (_word_reason(self.lexicon.cyrillic[category], reading, spelled_out=False)
                          or _word_reason(self.lexicon.cyrillic_stems[category], stems, spelled_out=False,
                                          joined=False))
                if reason:
                    found[category] = reason
                    break
        stems = readings[0][1]
        if "sexual" not in found and (_undressing(self.lexicon.cyrillic, words, female)
                                      or _undressing(self.lexicon.cyrillic_stems, stems, female)):
            found["sexual"] = "undressing"
        return found

    def _compact(self, own: str) -> tuple[str, frozenset[int], frozenset[int]]:
        """The compacted text with its allowed phrases blanked (as long as they were), and where its words
        start and end (see Substrings.find)."""
        compact, starts, ends = compacted_words(own)
        for allowed in self._allowed_compact:
            compact = compact.replace(allowed, "|" * len(allowed))
        return compact, starts, ends

    def _substring_hits(self, compact: tuple[str, frozenset[int], frozenset[int]]) -> dict[str, str]:
        found = {}
        for category in LIST_CATEGORIES:
            hit = self.lexicon.substrings[category].find(*compact)
            if hit:
                found[category] = f"term ({hit})"
        return found

    # -- the combinations
    def _excuses(self, section: str, view: tuple) -> bool:
        """Whether a word of this exception section is in the text and no word takes the exception back."""
        taken_back_by = EXCEPTION_TAKEN_BACK_BY.get(section)
        return self._mentions(section, view) and not (taken_back_by and self._mentions(taken_back_by, view))

    def _mentions_minor(self, own: str, view: tuple) -> bool:
        return any(int(age) < ADULT_AGE for age in AGE.findall(own)) or self._mentions("minor", view)

    @staticmethod
    def _view(latin: str, own: str) -> tuple:
        """The context view (see `_mentions`) of a text's readable (`latin`) and native (`own`) forms, allowed phrases
        kept: its words, Cyrillic words and their stems, compacted text, and words as written (digits kept, for [code]
        entries such as "88")."""
        cyrillic = CYRILLIC_WORD.findall(own)
        return (tokens(latin, look_alikes=False), cyrillic, russian_stems(cyrillic), compacted_words(own),
                WORDS_AS_WRITTEN.findall(latin))

    def _mentions(self, section: str, view: tuple[list[str], list[str], list[str], tuple, list[str]]) -> bool:
        """Whether a word or phrase of this section is in the text (its Latin words, Cyrillic words and their
        stems, compacted text, and its Latin words as written for entries with digits), in any script."""
        latin_words, cyrillic_words, cyrillic_stems, compact, numbers = view
        return (_has(self.lexicon.latin[section], latin_words) or _has(self.lexicon.cyrillic[section], cyrillic_words)
                or any(word in self.lexicon.latin[section].literals for word in numbers)
                or _has(self.lexicon.cyrillic_stems[section], cyrillic_stems)
                or self.lexicon.substrings[section].find(*compact) is not None)


def _english_text(words: list[str], plain: str) -> str:
    """The text for the English classifier: none ("") when the prompt has as many function words of the other
    Latin-script languages as of English, or more; with none of either, the text without the articles that are English
    words too ("die Oma" is read as "oma", "die bitch" as "bitch")."""
    english, other = sum(w in ENGLISH_WORDS for w in words), sum(w in OTHER_LATIN_WORDS for w in words)
    if english < other or (other and english == other):  # a tie: "an" is German too ("an einem Modell")
        return ""
    return plain if english else " ".join(w for w in plain.split() if w not in SHARED_LATIN_WORDS)


def _has(terms: Terms, words: list[str]) -> bool:
    return any(map(terms.matches, words)) or any(terms.phrase_at(words, i) for i in range(len(words)))


def _word_reason(terms: Terms, words: list[str], spelled_out: bool = True, joined: bool = True,
                 allow: Terms | None = None) -> str | None:
    """Why these words hit a section: a word, a phrase, a word split by a space (when `joined`), or spaced-out
    letters (when `spelled_out`) that do not spell an allowed word ("C.O.C.K.T.A.I.L.S" is no "cock")."""
    for i, word in enumerate(words):
        if terms.matches(word):
            return f"term ({word})"
        phrase = terms.phrase_at(words, i)
        if phrase:
            return f"phrase ({' '.join(phrase)})"
        after = words[i + 1] if i + 1 < len(words) else ""
        if joined and word and after and not {word, after} & FUNCTION_WORDS and terms.matches(word + after):
            return f"term split by a space ({word} {after})"
    if spelled_out:
        for run in re.findall(r"(?:\b[a-z] ){2,}[a-z]\b", " ".join(w or "_" for w in words)):
            if allow and allow.matches(run.replace(" ", "")):
                continue
            hit = terms.within(run.replace(" ", ""))
            if hit:
                return f"term spelled out ({hit})"
    return None


def _undressing(sections: dict[str, Terms], words: list[str], female: bool) -> bool:
    """A removal word followed within REMOVAL_REACH words by a clothing word ("without clothes"), or by a [top]
    (a shirt) when a [female] word is in the text: a surfer without a shirt is no nudity."""
    garments = (sections["clothing"], sections["top"]) if female else (sections["clothing"],)
    return any(sections["remove"].matches(word) and any(
        g.matches(after) for after in words[i + 1:i + 1 + REMOVAL_REACH] for g in garments)
        for i, word in enumerate(words))
