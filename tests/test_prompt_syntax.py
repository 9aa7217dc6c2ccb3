"""A1111 and compel prompt syntax in, compel syntax out (t2i.generation.prompt_syntax), read back by compel's own parser."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from t2i.generation.prompt_syntax import PromptSyntaxError, is_compel_syntax, to_compel


@pytest.fixture(scope="module")
def compel_parser():
    """compel's PromptParser; Compel.parse_prompt_string(s) is exactly PromptParser().parse_conjunction(s)."""
    # Importing the compel package pulls in torch, transformers and diffusers (7-11 s on this machine);
    # its prompt_parser.py needs only pyparsing, so load that file from the installed package directly.
    package_dir = Path(importlib.util.find_spec("compel").submodule_search_locations[0])
    spec = importlib.util.spec_from_file_location("compel_prompt_parser", package_dir / "prompt_parser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PromptParser()


def read(parser, compel_prompt: str) -> list[list[tuple[str, float]]]:
    """How compel reads a prompt: per conjunct, (fragment text, weight to 4 places)."""
    conjunction = parser.parse_conjunction(compel_prompt)
    return [[(fragment.text, round(fragment.weight, 4)) for fragment in part.children] for part in conjunction.prompts]


# (A1111 prompt, compel text we emit, compel's reading of it)
A1111_CASES = [
    ("a red ball", "a red ball", [[("a red ball", 1.0)]]),
    ("(red:1.3) ball", "(red)1.3 ball", [[("red", 1.3), ("ball", 1.0)]]),
    ("(red) ball", "(red)1.1 ball", [[("red", 1.1), ("ball", 1.0)]]),
    ("[red] ball", "(red)0.9091 ball", [[("red", 0.9091), ("ball", 1.0)]]),
    ("((red)) ball", "(red)1.21 ball", [[("red", 1.21), ("ball", 1.0)]]),
    ("(((red)))", "(red)1.331", [[("red", 1.331)]]),
    ("[[red]]", "(red)0.8264", [[("red", 0.8264)]]),
    ("[(a:1.5)]", "(a)1.364", [[("a", 1.364)]]),
    ("((a:1.5))", "(a)1.65", [[("a", 1.65)]]),
    ("[(a)] b", "a b", [[("a b", 1.0)]]),
    ("(a (b:2) c:0.5)", "(a)0.5 b (c)0.5", [[("a", 0.5), ("b", 1.0), ("c", 0.5)]]),
    ("(cat:1.25), (dog:0.8)", "(cat)1.25, (dog)0.8", [[("cat", 1.25), (",", 1.0), ("dog", 0.8)]]),
    ("(x:2) (y: 1.5 ) (z:.5) (w:+1.2)", "(x)2 (y)1.5 (z)0.5 (w)1.2",
     [[("x", 2.0), ("y", 1.5), ("z", 0.5), ("w", 1.2)]]),
    ("(x:0) y", "(x)0 y", [[("x", 0.0), ("y", 1.0)]]),
    ("(x:-0) y", "(x)0 y", [[("x", 0.0), ("y", 1.0)]]),
    ("(x:12345)", "(x)12340", [[("x", 12340.0)]]),
    ("(x:0.00001234)", "(x)0.00001234", [[("x", 0.0)]]),
    ("( red :1.2) ball", " (red)1.2  ball", [[("red", 1.2), ("ball", 1.0)]]),
    ("(a:1.2)(b:1.2)", "(ab)1.2", [[("ab", 1.2)]]),
    ("a(b:1.2)c", "a (b)1.2 c", [[("a", 1.0), ("b", 1.2), ("c", 1.0)]]),
    ("(a:b)", "(a:b)1.1", [[("a:b", 1.1)]]),
    ("(a:1.2.3)", "(a:1.2.3)1.1", [[("a:1 . 2 . 3", 1.1)]]),
    ("([a)]", "a", [[("a", 1.0)]]),
    # escapes: \( \) stay escaped for compel, \[ \] become plain (compel has no square brackets), \\ is one \
    (r"a \(b\) c", r"a \(b\) c", [[("a (b) c", 1.0)]]),
    (r"(a \(b\):1.2)", r"(a \(b\))1.2", [[("a (b)", 1.2)]]),
    (r"a \[b\] c", "a [b] c", [[("a [b] c", 1.0)]]),
    (r"a\\(b:1.2)", r"a\ (b)1.2", [[("a\\", 1.0), ("b", 1.2)]]),
    (r"(a\\:1.2)", r"(a\ )1.2", [[("a\\", 1.2)]]),
    (r"a\b", "ab", [[("ab", 1.0)]]),
    ('say "hi" (loud:1.2)', r'say \"hi\" (loud)1.2', [[('say "hi"', 1.0), ("loud", 1.2)]]),
    ('a sign saying "2024"', r'a sign saying \"2024\"', [[('a sign saying "2024"', 1.0)]]),
    # compel reads a bare - + or = inside (...) as an operator or not at all; they move outside, unweighted
    ("(a - b:1.2)", "(a)1.2 - (b)1.2", [[("a", 1.2), ("-", 1.0), ("b", 1.2)]]),
    ("(a = b:1.2)", "(a)1.2 = (b)1.2", [[("a", 1.2), ("=", 1.0), ("b", 1.2)]]),
    ("x(-- top-left:1.2)", "x -- (top-left)1.2", [[("x --", 1.0), ("top-left", 1.2)]]),
    ("a-[b]", "a - (b)0.9091", [[("a -", 1.0), ("b", 0.9091)]]),
    ("<lora:detail:0.8> (a:1.1)", "<lora:detail:0.8> (a)1.1", [[("<lora:detail:0.8>", 1.0), ("a", 1.1)]]),
    ("a\n(b:1.2)\nc", "a\n(b)1.2\nc", [[("a", 1.0), ("b", 1.2), ("c", 1.0)]]),
    ("   ", "   ", [[("", 1.0)]]),
    # BREAK
    ("one BREAK two", '("one", "two").and()', [[("one", 1.0)], [("two", 1.0)]]),
    ("BREAK one BREAK  BREAK (two) BREAK", '("one", "", "(two)1.1").and()',
     [[("one", 1.0)], [("", 1.0)], [("two", 1.1)]]),
    ("(a BREAK b:1.2)", '("(a)1.2", "(b)1.2").and()', [[("a", 1.2)], [("b", 1.2)]]),
    ('say "hi" BREAK (x:1.3) "y"', r'("say \"hi\"", "(x)1.3 \"y\"").and()',
     [[('say "hi"', 1.0)], [("x", 1.3), ('"y"', 1.0)]]),
    (r"a\\ BREAK b", r'("a\ ", "b").and()', [[("a\\", 1.0)], [("b", 1.0)]]),
    (r"\\red BREAK \\x41", r'("\ red", "\ x41").and()', [[("\\ red", 1.0)], [("\\ x41", 1.0)]]),
    ("a\n(b:1.2) BREAK c", '("a (b)1.2", "c").and()', [[("a", 1.0), ("b", 1.2)], [("c", 1.0)]]),
    ("a-BREAK b", '("a -", "b").and()', [[("a -", 1.0)], [("b", 1.0)]]),
    ("x BREAK", "x", [[("x", 1.0)]]),
    ("BREAK", "", [[("", 1.0)]]),
    ("BREAKFAST, break", "BREAKFAST, break", [[("BREAKFAST, break", 1.0)]]),
]


@pytest.mark.parametrize(("a1111", "compel", "reading"), A1111_CASES)
def test_a1111_is_translated_and_compel_reads_the_intended_weights(compel_parser, a1111, compel, reading):
    assert not is_compel_syntax(a1111)
    assert to_compel(a1111) == compel
    assert read(compel_parser, compel) == reading


COMPEL_CASES = [
    "(red ball)1.3 on grass",
    "(red)++ ball",
    "red++ ball--",
    "red- ball+",
    "a (red)0.8 ball",
    "(red).5 ball",
    '"red ball"1.3',
    '"red"-- ball',
    "(a (b)1.2 c)0.9",
    '("a cat", "a dog").blend(0.7, 0.3)',
    '("a cat", "a dog").and()',
    "a cat.swap(dog)",
    "(a cat).attend(1.2)",
    r"red++ \(ball",
]


@pytest.mark.parametrize("prompt", COMPEL_CASES)
def test_compel_prompts_pass_through_unchanged(prompt):
    assert is_compel_syntax(prompt)
    assert to_compel(prompt) == prompt


@pytest.mark.parametrize("prompt", ["top-left corner", "a mid-sized ball", "x-ray - style", "a - b + c",
                                    "(red:1.3)", "(a:-1)", '"2024" sign', '"a" "2b"', "1+1=2"])
def test_a1111_lookalikes_are_not_compel(prompt):
    assert not is_compel_syntax(prompt)


def test_a1111_and_compel_spellings_read_the_same(compel_parser):
    assert read(compel_parser, to_compel("(red:1.3) ball")) == read(compel_parser, "(red)1.3 ball")
    assert read(compel_parser, to_compel("((red))")) == read(compel_parser, to_compel("red++")) == [[("red", 1.21)]]
    assert read(compel_parser, to_compel("[red]")) == [[("red", 0.9091)]]
    assert read(compel_parser, "red-") == [[("red", 0.9)]]  # compel's minus base is 0.9, not A1111's 1/1.1


def test_compel_quirks_the_translation_works_around(compel_parser):
    # bare parentheses only group, so "(text)" is always written with its weight
    assert read(compel_parser, "(red) ball") == [[("red ball", 1.0)]]
    assert read(compel_parser, to_compel("(red) ball")) == [[("red", 1.1), ("ball", 1.0)]]
    # a weight cannot be negative: "-" is the x0.9 operator and the number becomes text
    assert read(compel_parser, "(red)-1.5") == [[("red", 0.9), ("1.5", 1.0)]]
    # whatever compel cannot parse becomes literal text, silently
    assert read(compel_parser, "(a - b)1.2") == [[("(a - b)1.2", 1.0)]]
    assert read(compel_parser, '("a\nb", "c").and()') == [[('("a b", c ).and()', 1.0)]]
    # inside a quoted .and() part, \r and friends are decoded
    assert read(compel_parser, '("\\red", "c").and()') == [[("ed", 1.0)], [("c", 1.0)]]


@pytest.mark.parametrize(("prompt", "message", "position"), [
    ("a (b c", "unbalanced '(' at character 3", 2),
    ("((a)", "unbalanced '(' at character 1", 0),
    ("(a:1.2", "unbalanced '(' at character 1", 0),
    ("a b) c", "unexpected ')' at character 4", 3),
    ("a:1.2) c", "unexpected ')' at character 6", 5),
    ("[a b", "unbalanced '[' at character 1", 0),
    ("(a) [b", "unbalanced '[' at character 5", 4),
    ("a b] c", "unexpected ']' at character 4", 3),
    ("(a]", "unexpected ']' at character 3", 2),
    ("(x:-1) y", "negative weight -1 at character 4: compel cannot weight text below 0; "
                 "use the negative prompt instead", 3),
    ("[(x: -0.5)]", "negative weight -0.5 at character 6: compel cannot weight text below 0; "
                    "use the negative prompt instead", 5),
    # compel prompts
    ("(red)1.3 (ball", "unbalanced '(' at character 10", 9),
    ("red++ ball)", "unexpected ')' at character 11", 10),
    ('red++ "ball', "unbalanced '\"' at character 7", 6),
])
def test_errors_name_the_character(prompt, message, position):
    with pytest.raises(PromptSyntaxError) as caught:
        to_compel(prompt)
    assert str(caught.value) == message
    assert caught.value.position == position
    assert isinstance(caught.value, ValueError)


LEAVES = ["cat", "red ball", "top-left", "x-ray", "a - b", "--", "+", "=", "1.5", "2", ",", ".", "x:y",
          r"\(", r"\)", r"\[", r"\]", r"\\", '"', "<lora:x:0.5>"]
WEIGHTS = ["0", "0.5", "1", "1.25", "1.3", "2", ".75"]


def random_a1111(rng: random.Random, depth: int = 0) -> tuple[str, list]:
    """A random A1111 prompt and what it means: (char, weight) per non-space character, None per BREAK."""
    text, meaning = "", []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["leaf", "leaf", "break", "group"] if depth < 3 else ["leaf"])
        if kind == "leaf":
            leaf = rng.choice(LEAVES)
            literal = leaf[1] if leaf.startswith("\\") else leaf
            piece, piece_meaning = leaf, [(char, 1.0) for char in literal if not char.isspace()]
        elif kind == "break":
            piece, piece_meaning = " BREAK ", [None]
        else:
            inner, inner_meaning = random_a1111(rng, depth + 1)
            opener, closer, factor = rng.choice([("(", ")", 1.1), ("[", "]", 1 / 1.1), ("(", ":", None)])
            if factor is None:
                weight = rng.choice(WEIGHTS)
                closer, factor = f":{weight})", float(weight)
            piece = opener + inner + closer
            piece_meaning = [item and (item[0], item[1] * factor) for item in inner_meaning]
        text += rng.choice(["", " ", "\n"]) + piece
        meaning += piece_meaning
    return text, meaning


def parts_of(meaning: list) -> list[list]:
    """Characters per BREAK part, without the empty parts at either end."""
    parts = [[]]
    for item in meaning:
        if item is None:
            parts.append([])
        else:
            parts[-1].append(item)
    while parts and not parts[0]:
        parts.pop(0)
    while parts and not parts[-1]:
        parts.pop()
    return parts


def test_random_a1111_prompts_read_back_as_meant(compel_parser):
    rng = random.Random(1111)
    translated = 0
    for _ in range(200):
        prompt, meaning = random_a1111(rng)
        if is_compel_syntax(prompt):  # e.g. "cat--": a compel weight, as compel would read it
            continue
        translated += 1
        compel = to_compel(prompt)
        conjunction = compel_parser.parse_conjunction(compel)
        read_back = []
        for index, part in enumerate(conjunction.prompts):
            read_back += ([None] if index else []) + [
                (char, fragment.weight) for fragment in part.children for char in fragment.text if not char.isspace()]
        got = parts_of(read_back)
        expected = parts_of(meaning)
        assert [[char for char, _ in part] for part in got] == [[char for char, _ in part] for part in expected], \
            (prompt, compel)
        for got_part, expected_part in zip(got, expected):
            for (char, got_weight), (_, meant) in zip(got_part, expected_part):
                rounded = float(f"{meant:.4g}")
                # a bare - + = is moved out of its (...) and so loses its weight; see _SPAN_UNSAFE_SYMBOLS
                allowed = [rounded, 1.0] if char in "+-=" else [rounded]
                assert any(got_weight == pytest.approx(w) for w in allowed), (prompt, compel, char)
    assert translated > 150
