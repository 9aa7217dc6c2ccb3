"""The prompt checker's n-gram classifier as shipped (issue 29): plain data loaded with its header checked, the same
score for the same prompt, and training data that teaches "short and ordinary" without holding the probes that
judge it."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from t2i.request import RequestError
from t2i_plugins.safety_prompt.ngram import MODEL_DIR, NgramClassifier

PROBES = Path(__file__).resolve().parent.parent / "bench" / "safety_short_probes.json"


def test_a_weights_file_whose_header_lies_is_refused_before_loading(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(MODEL_DIR, folder)
    weights = folder / "ngram_weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(struct.pack("<Q", len(data)) + data[8:])  # a header longer than the file
    with pytest.raises(RequestError, match="bad header length"):
        NgramClassifier(folder)


def test_the_same_prompt_scores_the_same_in_a_fresh_load():
    prompts = ["a red circle on a blue background", "猫の写真", "eine Frau im Park"]
    first, second = NgramClassifier(), NgramClassifier()
    scores = [first.score(prompt) for prompt in prompts]
    assert scores == [second.score(prompt) for prompt in prompts]
    assert all(0.0 <= score <= 1.0 for score, _ in scores)


def test_templates_teach_short_ordinary_prompts_without_holding_a_probe():
    from bench.safety_classifier import EVERYDAY_WEIGHT
    from bench.safety_training_data import everyday_sentences, training_sentences
    from t2i_plugins.safety_prompt.normalize import readable

    probes = json.loads(PROBES.read_text(encoding="utf-8"))
    everyday = set(everyday_sentences())
    texts, labels = training_sentences()
    assert len(everyday) > 4000 and set(everyday) <= set(texts)
    probe_readings = {readable(prompt) for name in ("rule", "development", "lead") for prompt in probes[name]}
    assert not probe_readings & {readable(text) for text in texts}  # the probes are development data, never trained
    assert len(probes["rule"]) == 64
    # short sentences weigh more innocent than to block, as the shipped model was trained on them (the world's
    # captions make the innocent sentences longer on average, so short ones must not lean towards blocking)
    template_weight = json.loads((MODEL_DIR / "ngram_meta.json").read_text())["template_weight"]
    for shorter_than in (12, 20, 30):
        short = [(text in everyday, label) for text, label in zip(texts, labels) if len(text) < shorter_than]
        innocent = EVERYDAY_WEIGHT * short.count((True, 0)) + template_weight * short.count((False, 0))
        assert innocent > template_weight * short.count((False, 1)), shorter_than


def test_person_words_of_every_language_train_as_innocent_in_every_frame():
    from bench.safety_training_data import EVERYDAY_WORDS, everyday_sentences
    from t2i_plugins.safety_prompt.wordlists import LANGUAGES

    words = json.loads(EVERYDAY_WORDS.read_text(encoding="utf-8"))
    everyday = set(everyday_sentences())
    for language in LANGUAGES:
        people, frames = words[language]["people"], words[language]["frames"]
        assert len(people) >= 40, language  # the family: bare, plural, casual, honorific, with adjectives and actions
        missing = [frame.format(person) for person in people for frame in frames
                   if frame.format(person) not in everyday]
        assert len(missing) <= len(frames), (language, missing[:3])  # only a probe may be left out


def test_pattern_and_material_words_and_the_worlds_captions_train_as_innocent_but_never_a_judged_caption():
    # "striped" read as "stripped" refused the embedded model's own prompts (docs/safety_history.md, round 4)
    from bench.safety_classifier import DEVELOPMENT_CORPUS, JUDGE_CORPORA
    from bench.safety_training_data import EVERYDAY_WORDS, everyday_sentences, world_captions
    from t2i_plugins.safety_prompt.wordlists import LANGUAGES

    words = json.loads(EVERYDAY_WORDS.read_text(encoding="utf-8"))
    everyday = set(everyday_sentences())
    for language in LANGUAGES:
        looks, frames = words[language]["looks"], words[language]["frames"]
        assert len(looks) >= 50, language  # patterns, textures, materials, colours, art styles
        assert all(frame.format(look) in everyday for look in looks for frame in frames), language
    assert "stripped wood" in words["en"]["looks"] and "striped" in words["en"]["looks"]
    captions = world_captions()
    assert len(captions) >= 4000 and set(captions) <= everyday
    for n, seed in (*JUDGE_CORPORA, DEVELOPMENT_CORPUS):  # judged or development captions are never trained on
        assert not set(world_captions(n, seed)) & everyday, seed


def test_ordinary_prompt_vocabulary_trains_as_innocent_alone_in_frames_and_in_tag_lists():
    # the fifth rule: quality tags, camera words, particles and pronouns refused alone ("8k" 0.999, "out" 1.00)
    from bench.safety_training_data import EVERYDAY_WORDS, everyday_sentences, styled_subjects
    from t2i_plugins.safety_prompt.wordlists import LANGUAGES

    words = json.loads(EVERYDAY_WORDS.read_text(encoding="utf-8"))
    everyday = set(everyday_sentences())
    for language in LANGUAGES:
        tags, frames = words[language]["tags"], words[language]["frames"]
        assert len(tags) >= 90, language
        missing = [frame.format(tag) for tag in tags for frame in frames if frame.format(tag) not in everyday]
        assert len(missing) <= 12, (language, missing[:3])  # only the lead's probes are left out
        assert sum(", " in s and s.split(", ")[0] in tags for s in everyday) > 0, language
    styled = styled_subjects(["a teapot"])
    assert len(styled) >= 30 and set(styled) <= everyday and all("a teapot" in s for s in styled)


@pytest.fixture(scope="module")
def default_checker():
    from t2i_plugins.safety_prompt.checker import PromptModeration

    return PromptModeration()


@pytest.mark.parametrize("prompt", json.loads(PROBES.read_text(encoding="utf-8"))["lead"])
def test_the_default_checker_passes_ordinary_tags_and_short_words(default_checker, prompt):
    # the lead's 20 probes that the fourth round's model refused alone ("8k", "out", "realistic" ...; the fifth rule's
    # (g) in docs/safety_history.md, the sixth's in README, Safety)
    verdict = default_checker.check_prompt(prompt)
    assert not verdict.flagged, (prompt, verdict.reason, verdict.scores)


def test_every_tuning_set_trains_and_the_sixth_rounds_sets_are_named_for_the_recall_condition():
    from bench.safety_classifier import ROUND6_TUNING_SETS
    from bench.safety_training_data import TESTS, dev_cases

    on_disk = {path.stem for path in (TESTS / "safety_dev").glob("*.jsonl")}
    cases = dev_cases()
    assert {case["set"] for case in cases} == on_disk
    assert set(ROUND6_TUNING_SETS) <= on_disk  # the prompts the sixth round's 39.8% was measured on
    assert {"blind_weak"} & on_disk <= on_disk - set(ROUND6_TUNING_SETS)  # new: never counted as old


def test_the_seventh_rule_names_each_condition_a_round_fails():
    from bench.safety_classifier import ROUND6_OUT_OF_FOLD_RECALL, failed_conditions

    passing = {"world_captions_refused": {"corpus(5000, seed=20261207)": {"refused": 0}},
               "everyday_classifier_flags": {"everyday fresh": 0.01, "everyday tags": 0.0},
               "old_benign_passed_with_classifier": 0.995, "prompt_check_median_ms_with_classifier": 12.0,
               "lead_probes_refused": [],
               "out_of_fold_recall": {"out_of_fold_block_recall": ROUND6_OUT_OF_FOLD_RECALL,
                                      "out_of_fold_block_recall_round6_prompts": 0.41}}
    assert failed_conditions(passing) == []
    lower_on_old_prompts = {**passing, "out_of_fold_recall": {**passing["out_of_fold_recall"],
                                                              "out_of_fold_block_recall_round6_prompts": 0.397}}
    assert failed_conditions(lower_on_old_prompts) == ["(h) out-of-fold recall under the sixth round's"]
    fresh_flags = {**passing, "everyday_classifier_flags": {"everyday fresh": 0.0101}, "lead_probes_refused": ["8k"]}
    assert failed_conditions(fresh_flags) == ["(b, f) everyday flags over 1%", "(g) lead probes refused"]
