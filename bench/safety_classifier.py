"""Would a small classifier help the prompt checker? (issue 29, item 1). Trains a char n-gram logistic regression
on the word lists alone (every category's terms, and the allow-list and context words as innocent, in templated
sentences of each list's language, plus the old benign set) and measures the lists with and without it as an
extra flag: the threshold is chosen on the dev set only (the lowest of THRESHOLDS that keeps dev benign passed
at 97% or more); the blind and held-out sets are only measured. Nothing here ships: the checker uses the
classifier only if this shows it helps. Writes bench/results/safety_classifier.json.

    python bench/safety_classifier.py
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result  # noqa: E402
from t2i.safety.evaluation import checkout_sets, rates  # noqa: E402
from t2i_plugins.safety_prompt.checker import PromptModeration  # noqa: E402
from t2i_plugins.safety_prompt.normalize import readable  # noqa: E402
from t2i_plugins.safety_prompt.wordlists import LANGUAGES, LISTS_DIR, read_sections  # noqa: E402

TESTS = Path(__file__).resolve().parent.parent / "tests"
THRESHOLDS = (0.8, 0.9, 0.95)
SETS = ("dev", "old benign", "blocked", "benign", "held-out")
TEMPLATES = {"en": ["a photo of {}", "{} on a beach, film grain", "portrait, {}, studio light", "oil painting: {}"],
             "es": ["una foto de {}", "{} en la playa"], "fr": ["une photo de {}", "{} sur la plage"],
             "de": ["ein Foto von {}", "{} am Strand"], "pt": ["uma foto de {}", "{} na praia"],
             "it": ["una foto di {}", "{} sulla spiaggia"], "ru": ["фото: {}", "{} на пляже"],
             "ja": ["{}の写真", "ビーチで{}"], "zh": ["{}的照片", "海滩上{}"], "ko": ["{} 사진", "해변에서 {}"]}
BLOCKED_SECTIONS = ("sexual", "sexual_minors", "violence_gore", "hate", "self_harm")
INNOCENT_SECTIONS = ("allow", "clothing", "group", "dead", "minor")


def training_sentences() -> tuple[list[str], list[int]]:
    """Templated sentences from the lists: blocked sections 1, innocent sections and the old benign set 0."""
    rng = random.Random(0)
    texts, labels = [], []
    for language in LANGUAGES:
        sections = read_sections(LISTS_DIR / f"{language}.txt")
        for label, names in ((1, BLOCKED_SECTIONS), (0, INNOCENT_SECTIONS)):
            for term in (t.rstrip("*") for name in names for t in sections[name]):
                for template in rng.sample(TEMPLATES[language], 2):
                    texts.append(template.format(term))
                    labels.append(label)
    old_benign = (TESTS / "data" / "safety_benign.txt").read_text(encoding="utf-8").splitlines()
    for line in (line for line in old_benign if line and not line.startswith("#")):
        texts.append(line.split("||")[0])
        labels.append(0)
    return texts, labels


def main() -> None:
    texts, labels = training_sentences()
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, max_features=200_000)
    model = LogisticRegression(C=4, max_iter=2000, class_weight="balanced").fit(
        vectorizer.fit_transform(map(readable, texts)), labels)

    def probability(prompt: str) -> float:
        return float(model.predict_proba(vectorizer.transform([readable(prompt)]))[0, 1])

    checker = PromptModeration()
    sets = checkout_sets(TESTS)
    listed = {name: {case["prompt"]: checker.check_prompt(case["prompt"]).flagged for case in sets[name]}
              for name in SETS}
    scored = {name: {case["prompt"]: probability(case["prompt"]) for case in sets[name]} for name in SETS}

    def overall(threshold: float | None) -> dict:
        return {name: {expect: row["all"]["rate"] for expect, row in rates(sets[name], lambda case: listed[name][
            case["prompt"]] or (threshold is not None and scored[name][case["prompt"]] >= threshold)).items()}
            for name in SETS}

    results = {"lists alone": overall(None), **{f"lists + classifier >= {t}": overall(t) for t in THRESHOLDS}}
    chosen = next((t for t in THRESHOLDS if results[f"lists + classifier >= {t}"]["dev"]["pass"] >= 0.97), None)
    start = time.perf_counter()
    for prompt in texts[:300]:
        probability(prompt)
    per_prompt_ms = (time.perf_counter() - start) / 300 * 1000
    for name, row in results.items():
        print(f"{name:<32} " + "  ".join(f"{s}: " + "/".join(f"{k} {v:.1%}" for k, v in r.items())
                                         for s, r in row.items()))
    print(f"threshold chosen on dev: {chosen}; {per_prompt_ms:.2f} ms per prompt; {len(texts)} training sentences")
    write_result("safety_classifier", {"training_sentences": len(texts), "threshold_chosen_on_dev": chosen,
                                       "classifier_ms_per_prompt": round(per_prompt_ms, 2), "rates": results},
                 model="char n-gram logistic regression on the word lists (not shipped)")


if __name__ == "__main__":
    main()
