"""The n-gram classifier's training sentences (bench/safety_classifier.py trains on them): the lists' terms in
templated frames, innocent everyday sentences (subjects, people, looks, ordinary prompt vocabulary, the styles of
styles/*.json on neutral subjects, the embedded world's captions), and the tuning prompts of tests/safety_dev. The
probes of bench/safety_short_probes.json are kept out of every sentence."""

from __future__ import annotations

import functools
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from t2i.safety.evaluation import read_set  # noqa: E402
from t2i_plugins.safety_prompt.normalize import readable  # noqa: E402
from t2i_plugins.safety_prompt.wordlists import LANGUAGES, LISTS_DIR, read_sections  # noqa: E402

BENCH = Path(__file__).resolve().parent
TESTS = BENCH.parent / "tests"
EVERYDAY_WORDS = BENCH / "safety_everyday_words.json"
STYLES_DIR = BENCH.parent / "styles"
PROBES = BENCH / "safety_short_probes.json"
# the embedded model's own captions (t2i.embedded.captions.corpus) of this seed are innocent training sentences
WORLD_CAPTIONS, WORLD_SEED = 4000, 1
BLOCKED_SECTIONS = ("sexual", "sexual_minors", "violence_gore", "hate", "self_harm")
INNOCENT_SECTIONS = ("allow", "clothing", "group", "dead", "minor")


def probes() -> dict[str, list[str]]:
    """The probe lists: "rule" and "development" (looked at while building) and "lead" (the lead's ordinary prompts
    that the fourth round's model refused: the fifth rule's (g), the checker with the classifier refuses none)."""
    data = json.loads(PROBES.read_text(encoding="utf-8"))
    return {"rule": data["rule"], "development": data["development"], "lead": data["lead"]}


def world_captions(n: int = WORLD_CAPTIONS, seed: int = WORLD_SEED) -> list[str]:
    """Captions of the embedded model's shapes world (the prompts the app exists for)."""
    from t2i.embedded.captions import corpus

    return corpus(n, seed=seed)


@functools.lru_cache(maxsize=1)
def everyday_sentences() -> tuple[str, ...]:
    """Innocent sentences: every subject in every frame of its language, and each subject in two scenes in a random
    frame; each pattern, texture, material, colour and art-style word ("looks") likewise in its scenes; the world's
    captions; no probe prompt among them."""
    rng, looks_rng, tags_rng = random.Random(0), random.Random(1), random.Random(2)
    words = json.loads(EVERYDAY_WORDS.read_text(encoding="utf-8"))
    left_out = {readable(p) for prompts in probes().values() for p in prompts}
    sentences = []
    for language in LANGUAGES:
        frames, scenes = words[language]["frames"], words[language]["scenes"]
        for subject in words[language]["subjects"] + words[language].get("people", []):
            sentences += [frame.format(subject) for frame in frames]
            sentences += [rng.choice(frames).format(scene.format(subject)) for scene in rng.sample(scenes, 2)]
        look_scenes = words[language]["look_scenes"]
        for look in words[language]["looks"]:
            sentences += [frame.format(look) for frame in frames]
            sentences += [looks_rng.choice(frames).format(scene.format(look))
                          for scene in looks_rng.sample(look_scenes, 2)]
        sentences += tag_sentences(words[language], tags_rng)
    sentences += styled_subjects(words["en"]["subjects"][24:])  # the styles on things, animals and places
    sentences += world_captions()
    return tuple(s for s in dict.fromkeys(sentences) if readable(s) not in left_out)


def tag_sentences(language_words: dict, rng: random.Random) -> list[str]:
    """Ordinary prompt vocabulary of one language (the fifth rule's "tags"): each tag in every frame (alone among
    them), in two comma-joined lists of two to four tags, and after a random subject."""
    tags, frames, subjects = language_words["tags"], language_words["frames"], language_words["subjects"]
    sentences = []
    for tag in tags:
        sentences += [frame.format(tag) for frame in frames]
        for _ in range(2):
            others = rng.sample(tags, rng.randint(1, 3))
            sentences.append(", ".join(rng.sample([tag] + others, len(others) + 1)))
        sentences.append(f"{rng.choice(subjects)}, {tag}")
    return sentences


def styled_subjects(subjects: list[str]) -> list[str]:
    """Every style of styles/*.json applied to each neutral subject (the prompts a styled request sends)."""
    from t2i.style_files import load_styles
    from t2i.styles import apply_styles

    library = load_styles([STYLES_DIR])
    return [apply_styles(subject, "", [name], library).prompt for name in library.names() for subject in subjects]


def training_sentences(with_categories: bool = False) -> tuple[list[str], list]:
    """Templated sentences: each list term in two frames of its language (blocked sections 1, innocent sections 0)
    and the everyday sentences (0); or, with `with_categories`, the blocked list sentences only, labelled with
    their section's category."""
    rng = random.Random(0)
    words = json.loads(EVERYDAY_WORDS.read_text(encoding="utf-8"))
    left_out = {readable(p) for prompts in probes().values() for p in prompts}
    texts, labels = [], []
    for language in LANGUAGES:
        sections = read_sections(LISTS_DIR / f"{language}.txt")
        for label, names in ((1, BLOCKED_SECTIONS), (0, INNOCENT_SECTIONS)):
            for name in names:
                if with_categories and not label:
                    continue
                for term in (t.rstrip("*") for t in sections[name]):
                    for frame in rng.sample(words[language]["frames"], 2):
                        if readable(frame.format(term)) not in left_out:  # a list phrase may be a probe too
                            texts.append(frame.format(term))
                            labels.append(name if with_categories else label)
    if not with_categories:
        everyday = everyday_sentences()
        texts += everyday
        labels += [0] * len(everyday)
    return texts, labels


def dev_cases() -> list[dict]:
    """Every tuning prompt: tests/safety_dev/*.jsonl (the checker's dev set, the blind and everyday tuning sets),
    each with the name of its set ("set")."""
    return [{**case, "set": path.stem} for path in sorted((TESTS / "safety_dev").glob("*.jsonl"))
            for case in read_set(path)]
