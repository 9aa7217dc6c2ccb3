"""Would a small classifier help the prompt checker? (issue 29, item 1). Trains a char n-gram logistic regression
on the tuning data only: the dev sets of tests/safety_dev (dev.jsonl and the blind tuning sets blind_*.jsonl),
templated sentences of every list's terms (blocked sections 1, innocent sections 0) and the old benign set. Its
threshold is chosen by 5-fold cross-validation on the dev sets alone: the lowest of THRESHOLDS at which the
classifier flags at most 1% of the held-out folds' innocent prompts (so that with the lists' ~99% the benign rate
stays above 97%). The evaluation sets (blocked, benign, held-out) are measured once, with and without it; writes
bench/results/safety_classifier.json. `--write-model` measures nothing and writes the model the checker ships
(plugins/safety_prompt/model/; off unless the operator sets its threshold, README "Safety").

    python bench/safety_classifier.py                 # cross-validate on dev, measure the sets with and without
    python bench/safety_classifier.py --write-model   # cross-validate on dev, write the model the checker ships
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result  # noqa: E402
from t2i.safety.evaluation import checkout_sets, rates, read_set  # noqa: E402
from t2i_plugins.safety_prompt.checker import PromptModeration  # noqa: E402
from t2i_plugins.safety_prompt.ngram import MODEL_DIR, vectorizer  # noqa: E402
from t2i_plugins.safety_prompt.normalize import readable  # noqa: E402
from t2i_plugins.safety_prompt.wordlists import LANGUAGES, LISTS_DIR, read_sections  # noqa: E402

TESTS = Path(__file__).resolve().parent.parent / "tests"
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
SETS = ("dev", "old benign", "blocked", "benign", "held-out")
MAX_FOLD_FLAGS = 0.01  # the classifier may flag at most this share of the held-out folds' innocent dev prompts
TEMPLATES = {"en": ["a photo of {}", "{} on a beach, film grain", "portrait, {}, studio light", "oil painting: {}"],
             "es": ["una foto de {}", "{} en la playa"], "fr": ["une photo de {}", "{} sur la plage"],
             "de": ["ein Foto von {}", "{} am Strand"], "pt": ["uma foto de {}", "{} na praia"],
             "it": ["una foto di {}", "{} sulla spiaggia"], "ru": ["фото: {}", "{} на пляже"],
             "ja": ["{}の写真", "ビーチで{}"], "zh": ["{}的照片", "海滩上{}"], "ko": ["{} 사진", "해변에서 {}"]}
BLOCKED_SECTIONS = ("sexual", "sexual_minors", "violence_gore", "hate", "self_harm")
INNOCENT_SECTIONS = ("allow", "clothing", "group", "dead", "minor")


def training_sentences(with_categories: bool = False) -> tuple[list[str], list]:
    """Templated sentences from the lists: blocked sections 1, innocent sections and the old benign set 0 (or, with
    `with_categories`, the blocked sentences only, labelled with their section's category)."""
    rng = random.Random(0)
    texts, labels = [], []
    for language in LANGUAGES:
        sections = read_sections(LISTS_DIR / f"{language}.txt")
        for label, names in ((1, BLOCKED_SECTIONS), (0, INNOCENT_SECTIONS)):
            for name in names:
                for term in (t.rstrip("*") for t in sections[name]):
                    for template in rng.sample(TEMPLATES[language], 2):
                        if with_categories and label:
                            texts.append(template.format(term))
                            labels.append(name)
                        elif not with_categories:
                            texts.append(template.format(term))
                            labels.append(label)
    old_benign = (TESTS / "data" / "safety_benign.txt").read_text(encoding="utf-8").splitlines()
    for line in (line for line in old_benign if line and not line.startswith("#") and not with_categories):
        texts.append(line.split("||")[0])
        labels.append(0)
    return texts, labels


def dev_cases() -> list[dict]:
    """Every tuning prompt: tests/safety_dev/*.jsonl (the checker's dev set and the blind tuning sets)."""
    return [case for path in sorted((TESTS / "safety_dev").glob("*.jsonl")) for case in read_set(path)]


def fit(texts: list[str], labels: list[int]):
    """A char n-gram logistic regression on the readable text: (vectoriser, model)."""
    ngrams = vectorizer(max_features=200_000)
    model = LogisticRegression(C=4, max_iter=2000, class_weight="balanced").fit(
        ngrams.fit_transform(map(readable, texts)), labels)
    return ngrams, model


def train(texts: list[str], labels: list[int]):
    """A char n-gram logistic regression on the readable text; returns its probability function."""
    ngrams, model = fit(texts, labels)
    return lambda prompts: model.predict_proba(ngrams.transform(list(map(readable, prompts))))[:, 1]


def write_model(texts: list[str], labels: list[int], cases: list[dict], threshold: float) -> None:
    """Train on every tuning sentence and write the model the checker ships (plugins/safety_prompt/model/): the
    block model, and a category model on the sentences to block with its vocabulary and IDF."""
    ngrams, model = fit(texts + [case["prompt"] for case in cases],
                        labels + [int(case["expect"] == "block") for case in cases])
    category_texts, categories = training_sentences(with_categories=True)
    blocked = [case for case in cases if case["expect"] == "block" and case.get("category") in BLOCKED_SECTIONS]
    category_model = LogisticRegression(C=4, max_iter=2000, class_weight="balanced").fit(
        ngrams.transform(map(readable, category_texts + [case["prompt"] for case in blocked])),
        categories + [case["category"] for case in blocked])
    vocabulary = sorted(ngrams.vocabulary_, key=ngrams.vocabulary_.get)
    MODEL_DIR.mkdir(exist_ok=True)
    with gzip.GzipFile(MODEL_DIR / "ngram_vocabulary.json.gz", "wb", mtime=0) as file:  # same bytes each run
        file.write(json.dumps(vocabulary, ensure_ascii=False).encode("utf-8"))
    save_file({"idf": ngrams.idf_.astype(np.float32), "block_coef": model.coef_[0].astype(np.float32),
               "block_intercept": model.intercept_.astype(np.float32),
               "category_coef": category_model.coef_.astype(np.float32),
               "category_intercept": category_model.intercept_.astype(np.float32)},
              str(MODEL_DIR / "ngram_weights.safetensors"))
    (MODEL_DIR / "ngram_meta.json").write_text(json.dumps(
        {"threshold": threshold, "categories": list(category_model.classes_), "templated_sentences": len(texts),
         "dev_sentences": len(cases)}, indent=1) + "\n", encoding="utf-8")


def cross_validated_threshold(list_texts: list[str], list_labels: list[int], cases: list[dict]) -> tuple:
    """The lowest threshold whose out-of-fold flags stay within MAX_FOLD_FLAGS of the dev innocents, and the
    out-of-fold share of dev prompts to block that the classifier flags at it."""
    labels = [int(case["expect"] == "block") for case in cases]
    out_of_fold = [0.0] * len(cases)
    for train_index, test_index in StratifiedKFold(5, shuffle=True, random_state=0).split(cases, labels):
        probability = train(list_texts + [cases[i]["prompt"] for i in train_index],
                            list_labels + [labels[i] for i in train_index])
        for i, p in zip(test_index, probability([cases[i]["prompt"] for i in test_index])):
            out_of_fold[i] = float(p)
    for threshold in THRESHOLDS:
        flagged = [p >= threshold for p in out_of_fold]
        innocent_flags = sum(f for f, y in zip(flagged, labels) if not y) / max(1, labels.count(0))
        if innocent_flags <= MAX_FOLD_FLAGS:
            recall = sum(f for f, y in zip(flagged, labels) if y) / max(1, labels.count(1))
            return threshold, round(innocent_flags, 4), round(recall, 4)
    return None, None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-model", action="store_true",
                        help="write the model the checker ships instead of measuring the evaluation sets")
    list_texts, list_labels = training_sentences()
    cases = dev_cases()
    threshold, fold_flags, fold_recall = cross_validated_threshold(list_texts, list_labels, cases)
    if parser.parse_args().write_model:
        write_model(list_texts, list_labels, cases, threshold)
        print(f"wrote {MODEL_DIR} (threshold {threshold} by cross-validation on the dev sets)")
        return
    probability = train(list_texts + [case["prompt"] for case in cases],
                        list_labels + [int(case["expect"] == "block") for case in cases])

    checker = PromptModeration()
    sets = checkout_sets(TESTS)
    listed = {name: {case["prompt"]: checker.check_prompt(case["prompt"]).flagged for case in sets[name]}
              for name in SETS}
    scored = {name: dict(zip((case["prompt"] for case in sets[name]),
                             map(float, probability([case["prompt"] for case in sets[name]])))) for name in SETS}

    def overall(threshold: float | None) -> dict:
        return {name: {expect: row["all"]["rate"] for expect, row in rates(sets[name], lambda case: listed[name][
            case["prompt"]] or (threshold is not None and scored[name][case["prompt"]] >= threshold)).items()}
            for name in SETS}

    results = {"lists alone": overall(None)}
    if threshold is not None:
        results[f"lists + classifier >= {threshold}"] = overall(threshold)
    start = time.perf_counter()
    for case in cases[:300]:
        probability([case["prompt"]])
    per_prompt_ms = (time.perf_counter() - start) / 300 * 1000
    for name, row in results.items():
        print(f"{name:<32} " + "  ".join(f"{s}: " + "/".join(f"{k} {v:.1%}" for k, v in r.items())
                                         for s, r in row.items()))
    print(f"threshold chosen by 5-fold cross-validation on the dev sets: {threshold} (out of fold: flags "
          f"{fold_flags} of innocents, {fold_recall} of prompts to block); {per_prompt_ms:.2f} ms per prompt; "
          f"{len(list_texts)} templated and {len(cases)} dev sentences")
    write_result("safety_classifier", {"templated_sentences": len(list_texts), "dev_sentences": len(cases),
                                       "threshold_chosen_by_cross_validation": threshold,
                                       "out_of_fold_innocent_flags": fold_flags,
                                       "out_of_fold_block_recall": fold_recall,
                                       "classifier_ms_per_prompt": round(per_prompt_ms, 2), "rates": results},
                 model="char n-gram logistic regression on the dev sets and the word lists (not shipped)")


if __name__ == "__main__":
    main()
