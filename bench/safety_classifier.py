"""May the prompt checker's n-gram classifier be on by default? (issue 29, item 1). Trains a char n-gram logistic
regression on the tuning data only: every set of tests/safety_dev (dev.jsonl, the blind tuning sets blind_*.jsonl,
the everyday tuning sets everyday*.jsonl), templated sentences of every list's terms (blocked sections 1, innocent
sections 0) and innocent sentences: templated everyday words (bench/safety_everyday_words.json: people, animals,
food, objects and places in the same frames, so that a frame such as "a photo of" or "{}の写真" leans neither way;
pattern, texture, material, colour and art-style words, "looks") and the embedded world's own captions
(corpus(WORLD_CAPTIONS, seed=WORLD_SEED)); bench/safety_training_data.py builds them.

The pre-registered decision (README, Safety, the seventh rule: the fourth's (a)-(d) with the fifth's (f), (g) and the
seventh's (h)), applied here in one run:
1. 5-fold cross-validation on the tuning prompts alone (the templated sentences and captions always train) chooses,
   among the settings left (TEMPLATE_WEIGHTS, REGULARISATIONS, FEATURE_PARTS; the everyday sentences and captions
   always weigh EVERYDAY_WEIGHT), the threshold: the lowest of THRESHOLDS at which the classifier flags at most
   MAX_FOLD_FLAGS of the held-out folds' innocent prompts; of the settings, the one that then flags the most
   prompts to block out of fold.
2. The model trained on all tuning data is measured once: the checker with it must refuse none of the world's
   captions of the judge's seeds (JUDGE_CORPORA, never trained on), the classifier may flag at most
   SHIP_MAX_EVERYDAY_FLAGS of each measure-only everyday set (EVERYDAY_SETS: everyday_fresh, fresh, and the
   others, measured before), the checker with it must pass at least SHIP_MIN_OLD_BENIGN of the old benign set (not
   trained on), the whole prompt check's median time with it must stay under SHIP_MAX_MEDIAN_MS, the checker with
   it must refuse none of the lead's probes, and its out-of-fold recall on the tuning prompts to block (all of
   them, and those of the sixth round's sets) must be no lower than the sixth round's (ROUND6_OUT_OF_FOLD_RECALL);
   only then may it be on by default (the result names the conditions that fail). The probes of
   bench/safety_short_probes.json and the captions of DEVELOPMENT_SEED are development data (scored and reported,
   never trained on, no judge).
3. Later, once (`--measure`): every evaluation set with the shipped model, with the lists alone and with it.
Nothing is tuned after step 2. Writes bench/results/safety_classifier.json (steps 1-2) and
safety_classifier_measured.json (step 3); `--write-model` writes the model the checker ships
(plugins/safety_prompt/model/; its default threshold is set in checker.py by the decision).

    python bench/safety_classifier.py --cross-validate-only  # step 1, and the development probes (tuning data only;
                                                             # with --write-model, writes the model, decides nothing)
    python bench/safety_classifier.py --write-model          # steps 1 and 2, and write the model the checker ships
    python bench/safety_classifier.py --decide               # step 2 alone, with the model written before
    python bench/safety_classifier.py --measure              # step 3 with the shipped model
    python bench/safety_classifier.py --probe                # score both probe lists with the shipped model
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result  # noqa: E402
from bench.safety_training_data import (BLOCKED_SECTIONS, TESTS, WORLD_CAPTIONS, WORLD_SEED,  # noqa: E402
                                        dev_cases, everyday_sentences, probes, training_sentences, world_captions)
from t2i.safety.evaluation import checkout_sets, rates, read_set  # noqa: E402
from t2i_plugins.safety_prompt.checker import DEFAULT_THRESHOLDS, PromptModeration  # noqa: E402
from t2i_plugins.safety_prompt.ngram import MODEL_DIR, NgramClassifier, NgramFeatures  # noqa: E402
from t2i_plugins.safety_prompt.normalize import readable  # noqa: E402

EVERYDAY_SETS = {"everyday fresh": TESTS / "safety_eval" / "everyday_fresh.jsonl",  # the sixth rule's fresh set (f)
                 "everyday tags": TESTS / "safety_eval" / "everyday_tags.jsonl",  # the fifth rule's fresh set (f)
                 "everyday art": TESTS / "safety_eval" / "everyday_art.jsonl",
                 "everyday people": TESTS / "safety_eval" / "everyday_people.jsonl",
                 "everyday short": TESTS / "safety_eval" / "everyday_short.jsonl",
                 "everyday": TESTS / "safety_eval" / "everyday.jsonl"}
# 0.5, 0.525, ... 0.975, then 0.98, 0.985, 0.99 (the fourth rule's amendment of 03:16: with the captions the
# development fit's threshold reached the old grid's top, 0.975, at 0.46% out-of-fold innocent flags)
THRESHOLDS = tuple(round(0.5 + 0.025 * step, 3) for step in range(20)) + (0.98, 0.985, 0.99)
# the list's templated sentences are three fifths to block; weighted down beside the written prompts, their frames
# lean less. The everyday sentences are hand-chosen innocent prompts and weigh as much as a written one: a short
# ordinary prompt must learn to pass (length-bucketed sample weights, tried at 23:45 on the tuning data only, found
# no more prompts to block out of fold at the same innocent flags: 30% vs 35% at weight 0.1 and C 8)
TEMPLATE_WEIGHTS = (0.1,)  # the third rule keeps the second round's choice (1.0 and 0.3 lost then)
EVERYDAY_WEIGHT = 1.0
REGULARISATIONS = (16.0,)  # the fifth rule keeps the fourth's choice (8.0 lost then; 4.0 in the second round)
FEATURE_PARTS = (("char", "word"),)  # ditto (characters alone lost)
MAX_FOLD_FLAGS = 0.005  # the classifier may flag at most this share of the held-out folds' innocent tuning prompts
SHIP_MAX_EVERYDAY_FLAGS = 0.01  # on by default only if it flags at most this share of each measure-only everyday set
SHIP_MIN_OLD_BENIGN = 0.995  # ... the checker with it passes at least this share of the old benign set
SHIP_MAX_MEDIAN_MS = 20.0  # ... and the whole prompt check's median time with it stays under this
RECALL_KEYS = ("out_of_fold_block_recall", "out_of_fold_block_recall_round6_prompts")
# the seventh rule's (h): its out-of-fold recall (the share of tuning prompts to block the classifier alone flags out
# of fold at its threshold) is no lower than the sixth round's at 0.975 (39.8%), both over all its tuning prompts to
# block and over the sixth round's own tuning prompts (the sets of tests/safety_dev it cross-validated on, 07:26)
ROUND6_OUT_OF_FOLD_RECALL = 0.398
ROUND6_TUNING_SETS = ("blind_harm", "blind_hate", "blind_langs", "blind_langs2", "blind_langs3", "blind_sexual",
                      "blind_styles", "blind_tricks", "dev", "everyday", "everyday_art", "everyday_extra")
# the judge's corpora of the embedded model's captions (the checker with the classifier must refuse none; the
# training sentences hold captions of another seed, safety_training_data.WORLD_SEED), development captions of another
JUDGE_CORPORA = ((5000, 20261207), (2000, 0))
DEVELOPMENT_CORPUS = (2000, 3)
EVALUATION_SETS = ("old evasion", "old benign", "blocked", "benign", "held-out", "held-out 2", "held-out 3",
                   "held-out 4", "held-out 5", "held-out 6", "held-out 7", "held-out 8", "everyday", "everyday fresh",
                   "everyday tags", "everyday short", "everyday people", "everyday art")


def fit(texts: list[str], labels: list[int], cases: list[dict], setting: dict):
    """An n-gram logistic regression (C, list template weight and feature parts from `setting`) on the readable
    text of the templated sentences and the tuning cases: (features, model)."""
    everyday = set(everyday_sentences())
    readings = [readable(text) for text in texts + [case["prompt"] for case in cases]]
    targets = labels + [int(case["expect"] == "block") for case in cases]
    weights = ([EVERYDAY_WEIGHT if text in everyday else setting["template_weight"] for text in texts] +
               [1.0] * len(cases))
    ngrams = NgramFeatures(setting["parts"])
    model = LogisticRegression(C=setting["regularisation"], max_iter=2000, class_weight="balanced")
    model.fit(ngrams.fit_transform(readings), targets, sample_weight=weights)
    return ngrams, model


def probability_of(ngrams, model):
    """The fitted classifier's probability function over prompts."""
    return lambda prompts: model.predict_proba(ngrams.transform([readable(p) for p in prompts]))[:, 1]


def write_model(ngrams, model, templated: int, cases: list[dict], choice: dict,
                category_sentences: tuple[list[str], list[str]]) -> None:
    """Write the measured model the checker ships (plugins/safety_prompt/model/): the block model, and a category
    model on the sentences to block (`category_sentences` and the tuning cases) with its vocabulary and IDF."""
    category_texts, categories = category_sentences
    blocked = [case for case in cases if case["expect"] == "block" and case.get("category") in BLOCKED_SECTIONS]
    category_model = LogisticRegression(C=4, max_iter=2000, class_weight="balanced").fit(
        ngrams.transform([readable(t) for t in category_texts + [case["prompt"] for case in blocked]]),
        categories + [case["category"] for case in blocked])
    vocabularies = ngrams.vocabularies()
    MODEL_DIR.mkdir(exist_ok=True)
    with gzip.GzipFile(MODEL_DIR / "ngram_vocabulary.json.gz", "wb", mtime=0) as file:  # same bytes each run
        file.write(json.dumps(vocabularies, ensure_ascii=False).encode("utf-8"))
    idf = {f"idf_{part}": v.idf_.astype(np.float32) for part, v in ngrams.vectorizers.items()}
    save_file({**idf, "block_coef": model.coef_[0].astype(np.float32),
               "block_intercept": model.intercept_.astype(np.float32),
               "category_coef": category_model.coef_.astype(np.float32),
               "category_intercept": category_model.intercept_.astype(np.float32)},
              str(MODEL_DIR / "ngram_weights.safetensors"))
    (MODEL_DIR / "ngram_meta.json").write_text(json.dumps(
        {"threshold": choice["threshold"], "template_weight": choice["template_weight"],
         "regularisation": choice["regularisation"], "parts": list(choice["parts"]),
         "categories": list(category_model.classes_), "templated_sentences": templated,
         "dev_sentences": len(cases), **{key: choice[key] for key in RECALL_KEYS}}, indent=1) + "\n",
        encoding="utf-8")


def cross_validated_choice(list_texts: list[str], list_labels: list[int], cases: list[dict]) -> dict:
    """Of the settings (template weight x C x feature parts), the one whose lowest threshold within MAX_FOLD_FLAGS
    of the innocent tuning prompts (out of fold) flags the most prompts to block out of fold; with its rates."""
    labels = [int(case["expect"] == "block") for case in cases]
    short_innocent = [not y and len(case["prompt"]) < 25 for case, y in zip(cases, labels)]
    round6_block = [y and case["set"] in ROUND6_TUNING_SETS for case, y in zip(cases, labels)]
    best = {"threshold": None, "out_of_fold_block_recall": -1.0, "tried": {}}
    settings = [{"template_weight": w, "regularisation": c, "parts": parts}
                for w in TEMPLATE_WEIGHTS for c in REGULARISATIONS for parts in FEATURE_PARTS]
    for setting in settings:
        out_of_fold = [0.0] * len(cases)
        for train_index, test_index in StratifiedKFold(5, shuffle=True, random_state=0).split(cases, labels):
            probability = probability_of(*fit(list_texts, list_labels, [cases[i] for i in train_index], setting))
            for i, p in zip(test_index, probability([cases[i]["prompt"] for i in test_index])):
                out_of_fold[i] = float(p)

        def share(threshold: float, which) -> float:
            chosen = [p >= threshold for p, w in zip(out_of_fold, which) if w]
            return round(sum(chosen) / max(1, len(chosen)), 4)

        innocent = [not y for y in labels]
        threshold = next((t for t in THRESHOLDS if share(t, innocent) <= MAX_FOLD_FLAGS), None)
        name = ", ".join(f"{k} {'+'.join(v) if k == 'parts' else v}" for k, v in setting.items())
        if threshold is None:
            best["tried"][name] = "no threshold within the limit"
            continue
        row = {"threshold": threshold, "out_of_fold_innocent_flags": share(threshold, innocent),
               "out_of_fold_short_innocent_flags": share(threshold, short_innocent),
               "out_of_fold_block_recall": share(threshold, labels),
               "out_of_fold_block_recall_round6_prompts": share(threshold, round6_block),
               "prompts_to_block": sum(labels), "round6_prompts_to_block": sum(round6_block),
               "out_of_fold_block_recall_per_set": {
                   name: share(threshold, [y and case["set"] == name for case, y in zip(cases, labels)])
                   for name in sorted({case["set"] for case, y in zip(cases, labels) if y})}}
        best["tried"][name] = row
        print(f"  {name}: {row}", flush=True)
        if row["out_of_fold_block_recall"] > best["out_of_fold_block_recall"]:
            best.update(row, **setting)
    return best


def lengths(texts: list[str], labels: list[int]) -> dict:
    """Mean characters of the templated sentences to block and to pass (the blocked ones should be no shorter)."""
    return {name: round(statistics.mean(len(t) for t, y in zip(texts, labels) if y == label), 1)
            for name, label in (("block", 1), ("pass", 0))}


def measure(classifier_threshold: float) -> None:
    """Step 3: every evaluation set with the shipped model, with the lists alone and with the classifier."""
    classifier, checker = NgramClassifier(), PromptModeration({**DEFAULT_THRESHOLDS, "ngram": 1.01})
    sets = {name: cases for name, cases in checkout_sets(TESTS).items() if name in EVALUATION_SETS}
    results = {"lists alone": {}, f"lists + classifier >= {classifier_threshold}": {}}
    for name, cases in sets.items():
        listed = {case["prompt"]: checker.check_prompt(case["prompt"]).flagged for case in cases}
        scored = {case["prompt"]: classifier.score(case["prompt"])[0] for case in cases}
        for label, threshold in zip(results, (None, classifier_threshold)):  # counts per category, language, trick
            results[label][name] = rates(cases, lambda case: listed[case["prompt"]] or (
                threshold is not None and scored[case["prompt"]] >= threshold))
    for label, row in results.items():
        print(f"{label:<28} " + "  ".join(f"{s}: " + "/".join(
            f"{k} {v['all']['right']}/{v['all']['total']} {v['all']['rate']:.1%}" for k, v in r.items())
            for s, r in row.items()))
    # the whole prompt check's time, without and with the classifier, in turn on each tuning prompt
    checkers = {"lists alone": PromptModeration({**DEFAULT_THRESHOLDS, "ngram": 1.01}),
                "lists + classifier": PromptModeration({**DEFAULT_THRESHOLDS, "ngram": classifier_threshold})}
    times: dict[str, list[float]] = {name: [] for name in checkers}
    for case in dev_cases()[:400]:
        for name, checker in checkers.items():
            start = time.perf_counter()
            checker.check_prompt(case["prompt"])
            times[name].append((time.perf_counter() - start) * 1000)
    latency = {name: {"median_ms": round(statistics.median(t), 2), "p95_ms": round(float(np.percentile(t, 95)), 2)}
               for name, t in times.items()}
    print(f"prompt check per prompt: {latency}")
    write_result("safety_classifier_measured", {"threshold": classifier_threshold, "rates": results,
                                                "prompt_check_latency": latency},
                 model="the shipped n-gram classifier (plugins/safety_prompt/model) beside the word lists")


def prompt_check_median_ms(threshold: float) -> float:
    """The whole prompt check's median time per prompt with the just-written model on, over 400 tuning prompts."""
    checker = PromptModeration({**DEFAULT_THRESHOLDS, "ngram": threshold})
    times = []
    for case in dev_cases()[:400]:
        start = time.perf_counter()
        checker.check_prompt(case["prompt"])
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def score_probes(probability, threshold: float | None, which=("rule", "development")) -> dict:
    """Each probe's score, and how many reach the threshold."""
    result = {}
    for name in which:
        scores = {prompt: round(float(p), 4) for prompt, p in zip(probes()[name], probability(probes()[name]))}
        flagged = [prompt for prompt, score in scores.items() if threshold is not None and score >= threshold]
        result[name] = {"flagged": flagged, "scores": scores}
        print(f"{name} probes: {len(flagged)} of {len(scores)} at {threshold}: {flagged}; highest " +
              ", ".join(f"{p} {s:.2f}" for p, s in sorted(scores.items(), key=lambda x: -x[1])[:6]))
    return result


def score_captions(probability, threshold: float, n: int, seed: int) -> dict:
    """Development captions of the world (a seed neither trained on nor judged): how many the classifier flags."""
    captions = world_captions(n, seed)
    scores = probability(captions)
    flagged = sorted(((round(float(s), 4), c) for c, s in zip(captions, scores) if s >= threshold), reverse=True)
    print(f"world captions corpus({n}, seed={seed}): {len(flagged)} flagged at {threshold}; highest "
          f"{float(np.max(scores)):.3f}, median {float(np.median(scores)):.3f}: {flagged[:5]}")
    return {"flagged": len(flagged), "of": n, "highest": round(float(np.max(scores)), 4),
            "median": round(float(np.median(scores)), 4), "flagged_prompts": flagged[:20]}


def failed_conditions(decision: dict) -> list[str]:
    """The seventh rule's conditions that a decision's measurements fail (none: the round replaces the shipped one)."""
    recall, median_ms = decision["out_of_fold_recall"], decision["prompt_check_median_ms_with_classifier"]
    failing = {
        "(a) world captions refused": any(row["refused"] for row in decision["world_captions_refused"].values()),
        "(b, f) everyday flags over 1%": any(share > SHIP_MAX_EVERYDAY_FLAGS
                                             for share in decision["everyday_classifier_flags"].values()),
        "(c) old benign passed under 99.5%": decision["old_benign_passed_with_classifier"] < SHIP_MIN_OLD_BENIGN,
        "(d) median prompt check not under 20 ms": median_ms is None or median_ms >= SHIP_MAX_MEDIAN_MS,
        "(g) lead probes refused": bool(decision["lead_probes_refused"]),
        "(h) out-of-fold recall under the sixth round's": any(
            recall.get(key) is None or recall[key] < ROUND6_OUT_OF_FOLD_RECALL for key in RECALL_KEYS)}
    return [condition for condition, failed in failing.items() if failed]


def decide(probability, threshold: float, checker: PromptModeration, training: dict, cross_validation: dict,
           timed: bool) -> None:
    """Step 2, once: the measure-only everyday sets, the old benign set, the lead's probes, the world's captions,
    (`timed`: the model on disk is the one decided on) the whole prompt check's median time and the out-of-fold
    recall of `cross_validation`; writes the decision, with the conditions that failed, and the `training` facts."""
    missing = [str(path) for path in EVERYDAY_SETS.values() if not path.exists()]
    if missing:
        sys.exit(f"the decision needs the measure-only everyday sets; missing: {missing}")
    everyday = {name: read_set(path, "pass") for name, path in EVERYDAY_SETS.items()}
    flags = {name: round(float(np.mean(probability([c["prompt"] for c in cases]) >= threshold)), 4)
             for name, cases in everyday.items()}
    old_benign = checkout_sets(TESTS)["old benign"]
    old_scores = probability([case["prompt"] for case in old_benign])
    old_benign_passed = round(float(np.mean([not checker.check_prompt(case["prompt"]).flagged and score < threshold
                                             for case, score in zip(old_benign, old_scores)])), 4)
    probe_scores = score_probes(probability, threshold, which=("rule", "development", "lead"))
    lead_refused = [prompt for prompt in probes()["lead"]  # the fifth rule's (g): the checker refuses none
                    if probe_scores["lead"]["scores"][prompt] >= threshold or checker.check_prompt(prompt).flagged]
    probe_scores["world captions"] = score_captions(probability, threshold, *DEVELOPMENT_CORPUS)
    world = {}  # the judge's captions: how many the checker with the classifier refuses (the rule: none)
    for n, seed in JUDGE_CORPORA:
        captions = world_captions(n, seed)
        scores = probability(captions)
        refused = [c for c, score in zip(captions, scores) if score >= threshold or checker.check_prompt(c).flagged]
        world[f"corpus({n}, seed={seed})"] = {
            "refused": len(refused), "of": n, "refused_prompts": refused[:20],
            "highest_classifier_score": round(float(np.max(scores)), 4),
            "in_training": len(set(captions) & set(world_captions()))}
    median_ms = prompt_check_median_ms(threshold) if timed else None
    recall = {key: cross_validation.get(key) for key in RECALL_KEYS}  # (h), from this model's cross-validation
    decision = {"world_captions_refused": world, "everyday_classifier_flags": flags,
                "old_benign_passed_with_classifier": old_benign_passed, "lead_probes_refused": lead_refused,
                "prompt_check_median_ms_with_classifier": median_ms, "out_of_fold_recall": recall}
    decision["failed"] = failed_conditions(decision)
    decision["on_by_default"] = not decision["failed"]
    print(f"decision: {decision}")
    write_result("safety_classifier", {
        **training, "decision": decision, "probes": probe_scores,
        "rule": {"max_fold_innocent_flags": MAX_FOLD_FLAGS, "max_everyday_flags": SHIP_MAX_EVERYDAY_FLAGS,
                 "min_old_benign_passed": SHIP_MIN_OLD_BENIGN, "max_prompt_check_median_ms": SHIP_MAX_MEDIAN_MS,
                 "min_out_of_fold_recall": ROUND6_OUT_OF_FOLD_RECALL}},
        model="char n-gram logistic regression on the tuning sets, the word lists and everyday templates")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-model", action="store_true", help="also write the measured model the checker ships")
    parser.add_argument("--probe", action="store_true", help="only score the probes with the shipped model")
    parser.add_argument("--measure", type=float, metavar="THRESHOLD",
                        help="only step 3: every evaluation set with the shipped model at this threshold")
    parser.add_argument("--decide", action="store_true",
                        help="only step 2, once, with the shipped model (written by --cross-validate-only --write-model)")
    parser.add_argument("--cross-validate-only", action="store_true",
                        help="stop after step 1 and the development probes (tuning data only)")
    arguments = parser.parse_args()
    if arguments.probe:
        classifier = NgramClassifier()
        threshold = json.loads((MODEL_DIR / "ngram_meta.json").read_text())["threshold"]
        result = score_probes(lambda prompts: [classifier.score(p)[0] for p in prompts], threshold)
        write_result("safety_classifier_probes", {"threshold": threshold, **result},
                     model="the shipped n-gram classifier (plugins/safety_prompt/model)")
        return
    if arguments.measure is not None:
        measure(arguments.measure)
        return
    if arguments.decide:
        classifier, meta = NgramClassifier(), json.loads((MODEL_DIR / "ngram_meta.json").read_text())
        decide(lambda prompts: np.array([classifier.score(p)[0] for p in prompts]), meta["threshold"],
               PromptModeration({**DEFAULT_THRESHOLDS, "ngram": 1.01}), {"shipped_model": meta}, meta, timed=True)
        return
    # the lists are read once, here (the sentences and the checker): they may change on disk while this runs
    list_texts, list_labels = training_sentences()
    category_sentences = training_sentences(with_categories=True)
    checker = PromptModeration({**DEFAULT_THRESHOLDS, "ngram": 1.01})
    cases = dev_cases()
    print(f"{len(list_texts)} templated sentences (mean characters {lengths(list_texts, list_labels)}), "
          f"{len(cases)} tuning prompts", flush=True)
    choice = cross_validated_choice(list_texts, list_labels, cases)
    threshold = choice["threshold"]
    print(f"cross-validated on the tuning sets: {choice}", flush=True)
    if threshold is None:  # no threshold within the limit: nothing to ship, the classifier stays the opt-in
        write_result("safety_classifier", {"cross_validation": choice, "decision": {"on_by_default": False}},
                     model="char n-gram logistic regression on the tuning sets, the word lists and everyday templates")
        return
    setting = {key: choice[key] for key in ("template_weight", "regularisation", "parts")}
    ngrams, model = fit(list_texts, list_labels, cases, setting)
    probability = probability_of(ngrams, model)
    if arguments.write_model:
        write_model(ngrams, model, len(list_texts), cases, choice, category_sentences)
        print(f"wrote {MODEL_DIR}")
    if arguments.cross_validate_only:
        score_probes(probability, threshold, which=("development", "lead"))
        score_captions(probability, threshold, *DEVELOPMENT_CORPUS)
        return

    decide(probability, threshold, checker, {
        "templated_sentences": len(list_texts), "everyday_templated_sentences": len(everyday_sentences()),
        "world_captions": f"corpus({WORLD_CAPTIONS}, seed={WORLD_SEED})",
        "templated_mean_characters": lengths(list_texts, list_labels), "tuning_sentences": len(cases),
        "cross_validation": choice}, choice, timed=arguments.write_model)

if __name__ == "__main__":
    main()
