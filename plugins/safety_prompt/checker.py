"""The prompt checker: normalise, then refuse listed terms, risky combinations, and abuse the classifier scores.

Matching, on the normalised text read twice (leet symbols as letters, and as separators):
1. phrases of the [allow] list are taken out first ("naked eye", "breast stroke");
2. any word, phrase, two neighbouring words written apart ("po rn") or run of spaced-out letters
   ("n u d e") that is a [block] term; chunks with separators inside ("n.u-d_e") and masked letters ("p*rn");
3. a [minor] word together with a [suggestive] word anywhere in the text;
4. a [remove] word followed closely by a [clothing] word ("without clothes");
5. alt-profanity-check's shipped classifier (offensive language) at or above the "profanity" threshold.
"""

from __future__ import annotations

import re

from profanity_check import predict_prob

from t2i.plugins import PromptChecker, Verdict

from .normalize import joined_chunks, masked_chunks, plain_words, readable, tokens
from .wordlists import REMOVAL_REACH, Terms, load_terms

DEFAULT_THRESHOLDS = {"profanity": 0.9}
# words never joined to a neighbour: "a pen is red" must not read as a blocked word
FUNCTION_WORDS = frozenset("a an and as at in is it no of on or the to".split())


class PromptModeration(PromptChecker):
    """Word lists over normalised text, plus an offensive-language classifier."""

    name = "prompt_moderation"
    label = "Prompt moderation"
    default_thresholds = DEFAULT_THRESHOLDS

    def __init__(self, thresholds: dict[str, float] = DEFAULT_THRESHOLDS):
        self.thresholds = dict(thresholds)
        self.terms = load_terms()
        allow = sorted(self.terms["allow"].written, key=len, reverse=True)
        self._allow_pattern = re.compile(r"\b(?:" + "|".join(
            r"\s+".join(map(re.escape, p.split())) for p in allow) + r")\b") if allow else None

    def check_prompt(self, text: str) -> Verdict:
        """Flag a prompt whose normalised words hit the lists, or that the classifier scores as abusive."""
        text = readable(text)
        reason = self._list_reason(text)
        profanity = float(predict_prob([plain_words(self._without_allowed(text))])[0])
        scores = {"blocklist": float(reason is not None), "profanity": round(profanity, 4)}
        if reason is None and profanity >= self.thresholds["profanity"]:
            reason = f"offensive language (score {profanity:.2f})"
        return Verdict(reason is not None, reason or "", scores)

    def _without_allowed(self, text: str) -> str:
        return self._allow_pattern.sub(" ", text) if self._allow_pattern else text

    def _list_reason(self, text: str) -> str | None:
        block = self.terms["block"]
        for symbols_are_letters in (True, False):
            words = self._allowed_blanked(tokens(text, symbols_are_letters))
            reason = self._word_reason(words) or self._combination_reason(words)
            if reason:
                return reason
        kept = self._without_allowed(text)
        for chunk in joined_chunks(kept):
            if block.matches(chunk):
                return f"blocked term written with separators ({chunk})"
        for pattern in masked_chunks(kept):
            hit = next((t for t in (*block.words, *block.prefixes) if re.fullmatch(pattern, t)), None)
            if hit:
                return f"blocked term with masked letters ({hit})"
        return None

    def _allowed_blanked(self, words: list[str]) -> list[str]:
        """The words with every allowed phrase replaced by empty words (so it neither matches nor joins)."""
        words = list(words)
        allow = self.terms["allow"]
        for i in range(len(words)):
            phrase = allow.phrase_at(words, i)
            if phrase:
                words[i:i + len(phrase)] = [""] * len(phrase)
        return words

    def _word_reason(self, words: list[str]) -> str | None:
        block = self.terms["block"]
        for i, word in enumerate(words):
            if block.matches(word):
                return f"blocked term ({word})"
            if block.phrase_at(words, i):
                return f"blocked phrase ({' '.join(block.phrase_at(words, i))})"
            after = words[i + 1] if i + 1 < len(words) else ""
            if word and after and not {word, after} & FUNCTION_WORDS and block.matches(word + after):
                return f"blocked term split by a space ({word} {words[i + 1]})"
        for run in re.findall(r"(?:\b[a-z] ){2,}[a-z]\b", " ".join(w or "_" for w in words)):
            hit = block.within(run.replace(" ", ""))
            if hit:
                return f"blocked term spelled out ({hit})"
        return None

    def _combination_reason(self, words: list[str]) -> str | None:
        terms: dict[str, Terms] = self.terms
        if any(map(terms["minor"].matches, words)) and (
                any(map(terms["suggestive"].matches, words))
                or any(terms["suggestive"].phrase_at(words, i) for i in range(len(words)))):
            return "a minor in a suggestive context"
        for i, word in enumerate(words):
            if terms["remove"].matches(word) and any(
                    map(terms["clothing"].matches, words[i + 1:i + 1 + REMOVAL_REACH])):
                return "undressing"
        return None
