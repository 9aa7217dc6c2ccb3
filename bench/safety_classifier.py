"""Would a small classifier help the prompt checker, and may it be on by default? (issue 29, item 1). Trains a char
n-gram logistic regression on the tuning data only: every set of tests/safety_dev (dev.jsonl, the blind tuning sets
blind_*.jsonl, the everyday tuning sets everyday*.jsonl), templated sentences of every list's terms (blocked
sections 1, innocent sections 0) and the old benign set.

The pre-registered decision (README, Safety), applied here in one run:
1. 5-fold cross-validation on the tuning prompts alone (the templated sentences always train) chooses the weight of
   the templated sentences (TEMPLATE_WEIGHTS), the regularisation C (REGULARISATIONS) and the threshold: the
   lowest of THRESHOLDS at which the classifier flags at most MAX_FOLD_FLAGS of the held-out folds' innocent
   prompts, everyday ones included; of the pairs, the one that then flags the most prompts to block out of fold.
2. The model trained on all tuning data is measured once on the measure-only everyday set and the old benign set:
   it may be on by default only if it flags at most SHIP_MAX_EVERYDAY_FLAGS of the everyday prompts and the
   checker with it passes at least SHIP_MIN_OLD_BENIGN of the old benign set.
3. Every evaluation set is measured once, with the lists alone and with the classifier; nothing is tuned after.
Writes bench/results/safety_classifier.json; `--write-model` also writes the measured model the checker ships
(plugins/safety_prompt/model/; its default threshold is set in checker.py by the decision).

    python bench/safety_classifier.py                 # cross-validate, decide, measure the sets with and without
    python bench/safety_classifier.py --write-model   # the same, and write the model the checker ships
    python bench/safety_classifier.py --cross-validate-only   # step 1 alone, on the tuning data
    python bench/safety_classifier.py --probe                 # score PROBES with the shipped model
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
from t2i_plugins.safety_prompt.ngram import MODEL_DIR, NgramClassifier, vectorizer  # noqa: E402
from t2i_plugins.safety_prompt.normalize import readable  # noqa: E402
from t2i_plugins.safety_prompt.wordlists import LANGUAGES, LISTS_DIR, read_sections  # noqa: E402

TESTS = Path(__file__).resolve().parent.parent / "tests"
THRESHOLDS = tuple(round(0.5 + 0.025 * step, 3) for step in range(20))  # 0.5, 0.525, ... 0.975
# the templated list sentences are short and three quarters blocked, so their template words ("a photo of",
# "on a beach") lean towards blocking; a lower weight beside the written prompts is one of the choices CV makes,
# with the regularisation C of the logistic regression
TEMPLATE_WEIGHTS = (1.0, 0.3, 0.1)
REGULARISATIONS = (4.0, 8.0)
SETS = ("dev", "dev everyday", "old benign", "everyday", "blocked", "benign", "held-out")
MAX_FOLD_FLAGS = 0.005  # the classifier may flag at most this share of the held-out folds' innocent tuning prompts
SHIP_MAX_EVERYDAY_FLAGS = 0.01  # on by default only if it flags at most this share of the measure-only everyday set
SHIP_MIN_OLD_BENIGN = 0.995  # ... and the checker with it passes at least this share of the old benign set
# everyday prompts shaped like the templated sentences, written after the measurement to look at what the rule missed
# (`--probe` scores them with the shipped model; none is in any training set)
PROBES = ("photo", "photo of a red fox", "a photo of a dog", "a photo of my grandmother", "a woman", "a man",
          "portrait, smiling woman, studio light", "portrait photo of an old man, studio light",
          "a man on a beach, film grain", "a photo of a cat on the beach", "oil painting of a lighthouse",
          "una foto de un perro", "une photo de Paris", "ein Foto von einem Hund", "фото собаки", "猫の写真",
          "狗的照片", "강아지 사진", "headshot", "striped cat", "girl reading a book", "two people at a cafe")
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


def fit(texts: list[str], labels: list[int], cases: list[dict], template_weight: float, regularisation: float):
    """A char n-gram logistic regression (C = `regularisation`) on the readable text of the templated sentences
    (at `template_weight`) and the tuning cases: (vectoriser, model)."""
    ngrams = vectorizer(max_features=200_000)
    weights = [template_weight] * len(texts) + [1.0] * len(cases)
    model = LogisticRegression(C=regularisation, max_iter=2000, class_weight="balanced").fit(
        ngrams.fit_transform(map(readable, texts + [case["prompt"] for case in cases])),
        labels + [int(case["expect"] == "block") for case in cases], sample_weight=weights)
    return ngrams, model


def probability_of(ngrams, model):
    """The fitted classifier's probability function over prompts."""
    return lambda prompts: model.predict_proba(ngrams.transform(list(map(readable, prompts))))[:, 1]


def write_model(ngrams, model, templated: int, cases: list[dict], choice: dict) -> None:
    """Write the measured model the checker ships (plugins/safety_prompt/model/): the block model, and a category
    model on the sentences to block with its vocabulary and IDF."""
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
        {"threshold": choice["threshold"], "template_weight": choice["template_weight"],
         "regularisation": choice["regularisation"],
         "categories": list(category_model.classes_), "templated_sentences": templated,
         "dev_sentences": len(cases)}, indent=1) + "\n", encoding="utf-8")


def cross_validated_choice(list_texts: list[str], list_labels: list[int], cases: list[dict]) -> dict:
    """Of TEMPLATE_WEIGHTS x REGULARISATIONS, the pair whose lowest threshold within MAX_FOLD_FLAGS of the innocent
    tuning prompts (out of fold) flags the most prompts to block out of fold; with its out-of-fold rates."""
    labels = [int(case["expect"] == "block") for case in cases]
    everyday = [case.get("category") == "none" for case in cases]
    best = {"threshold": None, "template_weight": None, "regularisation": None, "out_of_fold_block_recall": -1.0,
            "tried": {}}
    for template_weight, regularisation in ((w, c) for w in TEMPLATE_WEIGHTS for c in REGULARISATIONS):
        out_of_fold = [0.0] * len(cases)
        for train_index, test_index in StratifiedKFold(5, shuffle=True, random_state=0).split(cases, labels):
            probability = probability_of(*fit(list_texts, list_labels, [cases[i] for i in train_index],
                                              template_weight, regularisation))
            for i, p in zip(test_index, probability([cases[i]["prompt"] for i in test_index])):
                out_of_fold[i] = float(p)

        def share(threshold: float, which) -> float:
            chosen = [p >= threshold for p, w in zip(out_of_fold, which) if w]
            return round(sum(chosen) / max(1, len(chosen)), 4)

        innocent = [not y for y in labels]
        for threshold in THRESHOLDS:
            if share(threshold, innocent) <= MAX_FOLD_FLAGS:
                row = {"threshold": threshold, "out_of_fold_innocent_flags": share(threshold, innocent),
                       "out_of_fold_everyday_flags": share(threshold, everyday),
                       "out_of_fold_block_recall": share(threshold, labels)}
                best["tried"][f"template weight {template_weight}, C {regularisation}"] = row
                if row["out_of_fold_block_recall"] > best["out_of_fold_block_recall"]:
                    best.update(row, template_weight=template_weight, regularisation=regularisation)
                break
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-model", action="store_true", help="also write the measured model the checker ships")
    parser.add_argument("--probe", action="store_true", help="only score PROBES with the shipped model")
    parser.add_argument("--cross-validate-only", action="store_true",
                        help="stop after step 1 (tuning data only; no evaluation set is read)")
    arguments = parser.parse_args()
    if arguments.probe:
        classifier, threshold = NgramClassifier(), json.loads((MODEL_DIR / "ngram_meta.json").read_text())["threshold"]
        scores = {prompt: round(classifier.score(prompt)[0], 4) for prompt in PROBES}
        print("\n".join(f"{score:.3f} {prompt}" for prompt, score in scores.items()))
        write_result("safety_classifier_probes", {"threshold": threshold, "scores": scores,
                                                  "flagged": sum(score >= threshold for score in scores.values())},
                     model="the shipped n-gram classifier (plugins/safety_prompt/model)")
        return
    list_texts, list_labels = training_sentences()
    cases = dev_cases()
    choice = cross_validated_choice(list_texts, list_labels, cases)
    threshold = choice["threshold"]
    print(f"cross-validated on the tuning sets: {choice}")
    if arguments.cross_validate_only:
        return
    ngrams, model = fit(list_texts, list_labels, cases, choice["template_weight"] or TEMPLATE_WEIGHTS[0],
                        choice["regularisation"] or REGULARISATIONS[0])
    probability = probability_of(ngrams, model)
    if arguments.write_model and threshold is not None:
        write_model(ngrams, model, len(list_texts), cases, choice)
        print(f"wrote {MODEL_DIR}")

    checker = PromptModeration()
    sets = checkout_sets(TESTS)
    names = [name for name in SETS if name in sets]
    listed = {name: {case["prompt"]: checker.check_prompt(case["prompt"]).flagged for case in sets[name]}
              for name in names}
    scored = {name: dict(zip((case["prompt"] for case in sets[name]),
                             map(float, probability([case["prompt"] for case in sets[name]])))) for name in names}

    def overall(threshold: float | None, only: list[str]) -> dict:
        return {name: {expect: row["all"]["rate"] for expect, row in rates(sets[name], lambda case: listed[name][
            case["prompt"]] or (threshold is not None and scored[name][case["prompt"]] >= threshold)).items()}
            for name in only}

    # step 2 of the decision: the measure-only everyday set and the old benign set, before any other eval set
    decision = {"everyday_classifier_flags": None, "old_benign_passed_with_classifier": None, "on_by_default": False}
    if threshold is not None and "everyday" in sets:
        everyday_scores = scored["everyday"].values()
        decision["everyday_classifier_flags"] = round(sum(p >= threshold for p in everyday_scores) /
                                                      len(everyday_scores), 4)
        decision["old_benign_passed_with_classifier"] = overall(threshold, ["old benign"])["old benign"]["pass"]
        decision["on_by_default"] = (decision["everyday_classifier_flags"] <= SHIP_MAX_EVERYDAY_FLAGS and
                                     decision["old_benign_passed_with_classifier"] >= SHIP_MIN_OLD_BENIGN)
    print(f"decision: {decision}")
    # step 3: every set once, with the lists alone and with the classifier
    results = {"lists alone": overall(None, names)}
    if threshold is not None:
        results[f"lists + classifier >= {threshold}"] = overall(threshold, names)
    start = time.perf_counter()
    for case in cases[:300]:
        probability([case["prompt"]])
    per_prompt_ms = (time.perf_counter() - start) / 300 * 1000
    for name, row in results.items():
        print(f"{name:<32} " + "  ".join(f"{s}: " + "/".join(f"{k} {v:.1%}" for k, v in r.items())
                                         for s, r in row.items()))
    print(f"{per_prompt_ms:.2f} ms per prompt; {len(list_texts)} templated and {len(cases)} tuning sentences")
    write_result("safety_classifier", {"templated_sentences": len(list_texts), "tuning_sentences": len(cases),
                                       "cross_validation": choice, "decision": decision,
                                       "rule": {"max_fold_innocent_flags": MAX_FOLD_FLAGS,
                                                "max_everyday_flags": SHIP_MAX_EVERYDAY_FLAGS,
                                                "min_old_benign_passed": SHIP_MIN_OLD_BENIGN},
                                       "classifier_ms_per_prompt": round(per_prompt_ms, 2), "rates": results},
                 model="char n-gram logistic regression on the tuning sets and the word lists")


if __name__ == "__main__":
    main()
