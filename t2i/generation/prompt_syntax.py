"""Prompt weighting syntax: AUTOMATIC1111 or compel in, compel out.

A1111: (text) x1.1, [text] /1.1, (text:1.3), nesting multiplies, \\( \\) \\[ \\] \\\\ literal, BREAK starts a chunk.
compel: (text)1.3, (text)++, word--, "text"0.8, .blend() .and() .swap() .attend(); see compel/prompt_parser.py.
Prompts that use a compel-only construct pass through unchanged once their brackets balance; everything else
is read as A1111 and rewritten as flat compel: each weighted run becomes one "(text)W", never nested.
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["PromptSyntaxError", "is_compel_syntax", "plain_text", "to_compel", "uses_weighting"]


class PromptSyntaxError(ValueError):
    """A prompt we refuse to guess about; `position` is the 0-based index, the message counts from 1."""

    def __init__(self, problem: str, position: int, hint: str = ""):
        super().__init__(f"{problem} at character {position + 1}" + (f": {hint}" if hint else ""))
        self.position = position


# Constructs that mean something in compel and are mistakes or rarities in A1111. The middle one mirrors
# compel's grammar: a word followed by a +/- run that compel cannot fold into the word (it can fold in
# a single '-' followed by a plain character, which is why top-left and mid-sized stay words).
_COMPEL_ONLY = re.compile(r"""
      (?<!\\)\)(?:\d|\.\d|[+-])                                  # (red)1.3  (red)++  (red)-
    | (?:[^\s()",.+\-=]|\\[()",.+\-=])[+-](?=[\s()",.+\-=]|$)   # red++  ball-  (not top-left, not " - ")
    | \.(?:blend|and|add|swap|attend)\(                           # operators
""", re.X)
# "red ball"1.3 is compel too. Quoted strings are paired from the left, so the quote that opens "2024" in
# an A1111 prompt is not taken for one that closes a weighted quote.
_QUOTED = re.compile(r'(?<!\\)"(?:[^"\\]|\\.)*"')
_WEIGHT_OPERATOR = re.compile(r"\d|\.\d|[+-]")

# One A1111 token. Same alternatives as A1111's own re_attention, except that the weight must be a real
# number (A1111 accepts [.\d]+ and then crashes on "1.2.3"; here such a ':' stays text).
_A1111_TOKEN = re.compile(r"""
      \\[()\[\]\\]                                         # escaped bracket or backslash: the character itself
    | \\                                                   # any other backslash: A1111 drops it
    | :\s*(?P<weight>[+-]?(?:\d+\.?\d*|\.\d+))\s*\)        # (text:1.3) closes with a weight
    | [()\[\]]
    | [^\\()\[\]:]+
    | :
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")  # A1111's re_break

# Inside compel's "(...)" a +, - or = is only plain text when it is a single +/- that is glued to a
# following character; otherwise compel reads a weight operator or fails and silently falls back to
# treating the whole prompt as literal text. Such runs move outside the parentheses, losing their weight.
_SPAN_UNSAFE_SYMBOLS = re.compile(r"[+\-=]{2,}|=|[+-](?=[\s,.]|$)")
# Outside parentheses compel reads word++ / word- (followed by a space or the end) as a weight; a space
# before the run keeps it text. Prompts written that way are compel (_COMPEL_ONLY), so this only meets
# runs that end up before a chunk boundary, like the "a-" of "a-[b]" or of "a-BREAK b".
_PLAIN_ATTENTION_LOOKALIKE = re.compile(r"(?<=[^\s+\-])(?:[+-]{2,}|[+-](?=[\s.,=]|$))")


def is_compel_syntax(prompt: str) -> bool:
    """True if the prompt uses a construct only compel gives meaning to."""
    return _COMPEL_ONLY.search(prompt) is not None or any(
        _WEIGHT_OPERATOR.match(prompt, quoted.end()) for quoted in _QUOTED.finditer(prompt))


def to_compel(prompt: str) -> str:
    """The prompt in compel syntax: compel prompts unchanged, A1111 prompts translated."""
    if is_compel_syntax(prompt):
        _check_compel_brackets(prompt)
        return prompt
    parts = _parse_a1111(prompt)
    if len(parts) == 1:
        return _emit_part(parts[0])
    # BREAK: A1111 encodes each part as its own 75-token chunk; compel's .and() concatenates per-part embeddings
    # a quoted part cannot span lines: a newline in one makes compel read the whole prompt as literal text
    texts = [re.sub(r"[\r\n]", " ", _emit_part(_strip(runs))) for runs in parts]
    while texts and not texts[0]:
        texts.pop(0)
    while texts and not texts[-1]:
        texts.pop()
    if len(texts) <= 1:
        return texts[0] if texts else ""
    # compel un-escapes \" inside a quoted conjunct and then re-escapes it, so escaped quotes survive as they are
    return "(" + ", ".join(f'"{text}"' for text in texts) + ").and()"


def uses_weighting(prompt: str) -> bool:
    """True if the prompt asks for weighting: a weight other than 1, BREAK, or a compel-only construct."""
    if is_compel_syntax(prompt):
        return True
    parts = _parse_a1111(prompt)
    return len(parts) > 1 or any(_format_weight(weight) != "1" for runs in parts for _, weight in runs)


def plain_text(prompt: str) -> str:
    """The text of a prompt without weighting (see uses_weighting), A1111 escapes such as \\( resolved."""
    return "".join(text for runs in _parse_a1111(prompt) for text, _ in runs)


def _check_compel_brackets(prompt: str) -> None:
    # compel never reports unbalanced input: it falls back to reading the whole prompt as literal text.
    open_parens: list[int] = []
    open_quote = None
    i = 0
    while i < len(prompt):
        char = prompt[i]
        if char == "\\" and prompt[i + 1:i + 2] in ('(', ')', '"'):
            i += 2
            continue
        if char == "(":
            open_parens.append(i)
        elif char == ")":
            if not open_parens:
                raise PromptSyntaxError("unexpected ')'", i)
            open_parens.pop()
        elif char == '"':
            open_quote = i if open_quote is None else None
        i += 1
    if open_parens:
        raise PromptSyntaxError("unbalanced '('", open_parens[-1])
    if open_quote is not None:
        raise PromptSyntaxError("unbalanced '\"'", open_quote)


def _parse_a1111(prompt: str) -> list[list[tuple[str, float]]]:
    """A1111 prompt -> BREAK-separated parts, each a list of (text, weight) runs; A1111's algorithm, but strict."""
    pieces: list[list] = []  # [text, weight]; text None marks a BREAK
    open_brackets: dict[str, list[tuple[int, int]]] = {"(": [], "[": []}  # (first piece, character position)

    def close(closer: str, position: int, factor: float) -> None:
        opened = open_brackets["(" if closer == ")" else "["]
        if not opened:
            raise PromptSyntaxError(f"unexpected '{closer}'", position)
        # like A1111, a bracket scales everything since its opening, so '(' and '[' may even cross
        for piece in pieces[opened.pop()[0]:]:
            piece[1] *= factor

    for match in _A1111_TOKEN.finditer(prompt):
        token, weight = match.group(), match.group("weight")
        if token.startswith("\\"):
            pieces.append([token[1:], 1.0])
        elif token in "([":
            open_brackets[token].append((len(pieces), match.start()))
        elif weight is not None:
            close(")", match.end() - 1, float(weight))
            if float(weight) < 0:
                raise PromptSyntaxError(f"negative weight {weight}", match.start("weight"),
                                        "compel cannot weight text below 0; use the negative prompt instead")
        elif token == ")":
            close(")", match.start(), 1.1)
        elif token == "]":
            close("]", match.start(), 1 / 1.1)
        else:
            for index, text in enumerate(_BREAK.split(token)):
                if index:
                    pieces.append([None, 1.0])
                pieces.append([text, 1.0])
    unclosed = [(position, bracket) for bracket, opened in open_brackets.items() for _, position in opened]
    if unclosed:
        position, bracket = max(unclosed)
        raise PromptSyntaxError(f"unbalanced '{bracket}'", position)

    parts: list[list[tuple[str, float]]] = [[]]
    for text, weight in pieces:
        if text is None:
            parts.append([])
        elif text:
            parts[-1].append((text, weight))
    return parts


def _strip(runs: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The runs without the part's leading and trailing whitespace."""
    runs = [run for run in runs if run[0].strip()]
    if runs:
        runs[0] = (runs[0][0].lstrip(), runs[0][1])
        runs[-1] = (runs[-1][0].rstrip(), runs[-1][1])
    return runs


def _format_weight(weight: float) -> str:
    # 4 significant digits, always positional: compel's number grammar has no exponent (1e-05 would be text).
    # + 0.0 turns the -0.0 of "(a:-0)" into 0, which compel would otherwise read as a '-' (x0.9) operator.
    return format(Decimal(f"{weight + 0.0:.4g}"), "f")


def _escape(text: str) -> str:
    # compel un-escapes \( \) \" and, inside a quoted .and() part, pyparsing also decodes \n \t \x41 \101 and
    # the like, so a literal backslash is always followed by a space (the tokenizer splits it off anyway).
    text = re.sub(r"\\(?!\s)", r"\\ ", text)
    return re.sub(r'([()"])', r"\\\1", text)


def _emit_part(runs: list[tuple[str, float]]) -> str:
    """One BREAK part as compel text: weighted runs as (text)W, plain runs escaped."""
    # Merge by printed weight, as A1111 merges equal weights: [(a)] is 1.0000000000000002, i.e. plain.
    merged: list[list[str]] = []
    for text, weight in runs:
        printed = _format_weight(weight)
        if merged and merged[-1][1] == printed:
            merged[-1][0] += text
        else:
            merged.append([text, printed])

    chunks: list[tuple[str, bool]] = []  # (compel text, must be set off by whitespace)
    for text, printed in merged:
        core = text.strip()
        if printed == "1" or not core:
            chunks.append((_PLAIN_ATTENTION_LOOKALIKE.sub(r" \g<0>", _escape(text)), False))
            continue
        if text[0].isspace():
            chunks.append((text[:len(text) - len(text.lstrip())], False))
        start = 0
        for symbols in _SPAN_UNSAFE_SYMBOLS.finditer(core):
            chunks += _weighted(core[start:symbols.start()], printed) + [(symbols.group(), True)]
            start = symbols.end()
        chunks += _weighted(core[start:], printed)
        if text[-1].isspace():
            chunks.append((text[len(text.rstrip()):], False))

    out = ""
    for index, (chunk, isolated) in enumerate(chunks):
        # compel reads "word(red)1.2" as one literal word and "(red)1.21girl" as weight 1.21 + "girl"
        after_isolated = index > 0 and chunks[index - 1][1] and not chunk.startswith(",")
        if out and not out[-1].isspace() and (isolated or after_isolated) and not chunk[0].isspace():
            out += " "
        out += chunk
    return out


def _weighted(text: str, printed: str) -> list[tuple[str, bool]]:
    text = text.strip()
    return [(f"({_escape(text)}){printed}", True)] if text else []
