"""Captions for shapes-world scenes, worded the many ways people write them.

Training draws from TRAIN_TEMPLATES; the fidelity benchmark words its prompts with EVAL_TEMPLATES,
which training never sees, and asks for (shape, colour, position) combinations held out of training.
"""

from __future__ import annotations

import hashlib
import random

from t2i.embedded.world import DEFAULT_BACKGROUND, DEFAULT_POSITION, DEFAULT_SIZE, Scene, ShapeObject

SHAPE_WORDS = {
    "circle": ["circle", "ball", "disc", "round circle"],
    "square": ["square", "box", "block"],
    "triangle": ["triangle"],
    "star": ["star"],
    "heart": ["heart"],
    "ring": ["ring", "donut", "hoop"],
}
SIZE_WORDS = {"small": ["small", "little", "tiny"], "medium": ["medium", "medium-sized", "mid-sized"],
              "large": ["large", "big", "huge"]}
POSITION_WORDS = {
    "top left": ["at the top left", "in the top-left corner", "in the upper left", "top left"],
    "top": ["at the top", "at the top center", "in the upper middle", "top"],
    "top right": ["at the top right", "in the top-right corner", "in the upper right", "top right"],
    "left": ["on the left", "at the left", "at the middle left", "left"],
    "center": ["in the center", "in the middle", "centered", "in the centre"],
    "right": ["on the right", "at the right", "at the middle right", "right"],
    "bottom left": ["at the bottom left", "in the bottom-left corner", "in the lower left", "bottom left"],
    "bottom": ["at the bottom", "at the bottom center", "in the lower middle", "bottom"],
    "bottom right": ["at the bottom right", "in the bottom-right corner", "in the lower right", "bottom right"],
}
BACKGROUND_WORDS = ["with a {c} background", "on a {c} background", ", {c} background", "on {c}",
                    "against a {c} backdrop"]
STYLE_WORDS = {"solid": [""], "outlined": ["outlined", "outline of a"], "striped": ["striped"],
               "dotted": ["dotted", "polka-dot"]}
RELATION_WORDS = {"left of": ["left of", "to the left of"], "right of": ["right of", "to the right of"],
                  "above": ["above", "over"], "below": ["below", "under"]}

# {obj} is "<size> <colour> <shape>", {pos} a position phrase, {bg} a background phrase
TRAIN_TEMPLATES = [
    "a {obj} {pos} {bg}",
    "{obj} {pos} {bg}",
    "a {obj} {bg} {pos}",
    "{pos} a {obj} {bg}",
    "a picture of a {obj} {pos} {bg}",
    "an image of a {obj}, {pos}, {bg}",
]
EVAL_TEMPLATES = [
    "draw a {obj} {pos} {bg}",
    "please make a {obj} placed {pos} {bg}",
    "illustration: {obj} {pos} {bg}",
]
PAIR_TRAIN_TEMPLATES = ["a {a} {rel} a {b} {bg}", "{a} {rel} {b} {bg}", "a picture of a {a} {rel} a {b} {bg}"]
PAIR_EVAL_TEMPLATES = ["draw a {a} {rel} a {b} {bg}"]


def is_held_out(obj: ShapeObject) -> bool:
    """True for the (shape, colour, position) combinations that training never shows."""
    key = f"{obj.shape}|{obj.colour}|{obj.position}".encode()
    return hashlib.sha256(key).digest()[0] % 8 == 0


def _object_phrase(obj: ShapeObject, rng: random.Random, with_size: bool, with_style: bool) -> str:
    words = []
    if with_size:
        words.append(rng.choice(SIZE_WORDS[obj.size]))
    if with_style:
        words.append(rng.choice(STYLE_WORDS[obj.style]))
    words += [obj.colour, rng.choice(SHAPE_WORDS[obj.shape])]
    return " ".join(w for w in words if w)


def _background_phrase(background: str, rng: random.Random, say_default: float) -> str:
    if background == DEFAULT_BACKGROUND and rng.random() > say_default:
        return ""
    return rng.choice(BACKGROUND_WORDS).format(c=background)


def _tidy(text: str) -> str:
    text = " ".join(text.split())
    return text.replace(" ,", ",").strip(" ,")


def caption(scene: Scene, rng: random.Random, eval_wording: bool = False) -> str:
    """One caption for a scene; words for default size/position/background are sometimes left out."""
    bg = _background_phrase(scene.background, rng, say_default=1.0 if eval_wording else 0.3)
    if len(scene.objects) == 1:
        obj = scene.objects[0]
        omit_size = obj.size == DEFAULT_SIZE and not eval_wording and rng.random() < 0.5
        phrase = _object_phrase(obj, rng, not omit_size, obj.style != "solid")
        pos = rng.choice(POSITION_WORDS[obj.position])
        if obj.position == DEFAULT_POSITION and not eval_wording and rng.random() < 0.5:
            pos = ""
        template = rng.choice(EVAL_TEMPLATES if eval_wording else TRAIN_TEMPLATES)
        return _tidy(template.format(obj=phrase, pos=pos, bg=bg))
    a, b = (_object_phrase(o, rng, rng.random() < 0.5, o.style != "solid") for o in scene.objects)
    template = rng.choice(PAIR_EVAL_TEMPLATES if eval_wording else PAIR_TRAIN_TEMPLATES)
    return _tidy(template.format(a=a, b=b, rel=rng.choice(RELATION_WORDS[scene.relation]), bg=bg))


def corpus(n: int, seed: int = 0) -> list[str]:
    """Captions of random scenes (all styles and colours, for building the tokenizer's merges)."""
    from t2i.embedded.world import ALL_COLOURS, HELD_OUT_STYLES, STYLES, random_scene

    rng = random.Random(seed)
    colours = tuple(c for c in ALL_COLOURS if c != "gray")
    texts = []
    for i in range(n):
        scene = random_scene(rng, two_objects=i % 3 == 0, colours=colours, styles=STYLES + HELD_OUT_STYLES)
        texts.append(caption(scene, rng, eval_wording=i % 2 == 0))
    return texts
