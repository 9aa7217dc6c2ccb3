"""The checker's own prompt classifier: character n-grams (2-4, TF-IDF) and two logistic regressions, one saying
whether a prompt is to be blocked, one naming its category. Trained only on the tuning data (tests/safety_dev, its
everyday sets included, and templated sentences of the word lists, weighted down beside the written prompts) by
`python bench/safety_classifier.py --write-model`, which chose the templates' weight, C and the threshold by
cross-validation on that data and applied the README's pre-registered rule for turning it on by default; the
evaluation sets only measured it (README, Safety).

The model is plain data: the n-gram vocabulary (model/ngram_vocabulary.json.gz), the IDF weights and both models'
coefficients (model/ngram_weights.safetensors), and the category names with the cross-validated threshold
(model/ngram_meta.json, with the training choices; the checker's own threshold setting decides, README
"Safety").
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from sklearn.feature_extraction.text import TfidfVectorizer

from .normalize import readable

MODEL_DIR = Path(__file__).resolve().parent / "model"
# the vectoriser's settings; the training in bench/safety_classifier.py builds it with `vectorizer()` too
NGRAMS = {"analyzer": "char_wb", "ngram_range": (2, 4), "sublinear_tf": True}


def vectorizer(**settings) -> TfidfVectorizer:
    """The TF-IDF character n-gram vectoriser the classifier is trained and run with."""
    return TfidfVectorizer(**NGRAMS, **settings)


class NgramClassifier:
    """Scores a prompt (readable reading) for blocking, and names the category it most resembles."""

    def __init__(self, folder: Path = MODEL_DIR):
        meta = json.loads((folder / "ngram_meta.json").read_text(encoding="utf-8"))
        with gzip.open(folder / "ngram_vocabulary.json.gz", "rt", encoding="utf-8") as file:
            ngrams = json.load(file)
        weights = load_file(str(folder / "ngram_weights.safetensors"))
        self.categories: list[str] = meta["categories"]
        self._vectorizer = vectorizer(vocabulary={ngram: i for i, ngram in enumerate(ngrams)})
        self._vectorizer.idf_ = weights["idf"].astype(np.float64)
        self._block = (weights["block_coef"].astype(np.float64), float(weights["block_intercept"][0]))
        self._category = (weights["category_coef"].astype(np.float64), weights["category_intercept"].astype(np.float64))

    def score(self, text: str) -> tuple[float, str]:
        """The probability that the prompt is to be blocked, and the category it most resembles."""
        features = self._vectorizer.transform([readable(text)])
        coef, intercept = self._block
        probability = 1.0 / (1.0 + np.exp(-(float((features @ coef)[0]) + intercept)))
        category_coef, category_intercept = self._category
        category = self.categories[int(np.argmax(features @ category_coef.T + category_intercept))]
        return float(probability), category


@functools.lru_cache(maxsize=1)
def shipped_classifier() -> NgramClassifier:
    """The classifier shipped in model/ (loaded once per process)."""
    return NgramClassifier()
