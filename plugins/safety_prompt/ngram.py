"""The checker's own prompt classifier: character n-grams (2-4, TF-IDF), with word 1-2 grams beside them when its
training chose them, and two logistic regressions, one saying whether a prompt is to be blocked, one naming its
category. Trained only on the tuning data (tests/safety_dev, its everyday sets included), templated sentences of the
word lists (weighted down beside the written prompts), innocent templated sentences of everyday words (people,
animals, food, places, and pattern, texture, material, colour and art-style words, in the same frames) and the
embedded model's own captions, by `python bench/safety_classifier.py --write-model`, which chose C and the threshold
by cross-validation on that data and applied the README's pre-registered rule for turning it on by default; the
evaluation sets only measured it (README, Safety).

The model is plain data: the n-gram vocabularies (model/ngram_vocabulary.json.gz), the IDF weights and both models'
coefficients (model/ngram_weights.safetensors, its header checked before loading), and the category names with the
cross-validated threshold (model/ngram_meta.json, with the training choices; the checker's own threshold setting
decides, README "Safety").
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

import numpy as np
import scipy.sparse
from safetensors.numpy import load_file
from sklearn.feature_extraction.text import TfidfVectorizer

from t2i.models.file_checks import read_safetensors_header

from .normalize import readable
from .tfidf import TfidfOfOneText

MODEL_DIR = Path(__file__).resolve().parent / "model"
MAX_WEIGHTS_BYTES = 16 << 20  # the shipped weights are about 7 MB; a larger file is not ours
# the vectorisers' settings, by part; the training in bench/safety_classifier.py builds them with `NgramFeatures`.
# Word n-grams tell "striped" from "stripped", which character n-grams ("stri", "trip") blur
PARTS = {"char": {"analyzer": "char_wb", "ngram_range": (2, 4), "sublinear_tf": True, "max_features": 200_000},
         "word": {"analyzer": "word", "ngram_range": (1, 2), "sublinear_tf": True, "max_features": 100_000}}


class NgramFeatures:
    """TF-IDF features of readable prompts: character n-grams, and word n-grams beside them (each part normalised
    on its own, then side by side)."""

    def __init__(self, parts: tuple[str, ...] = ("char",)):
        self.vectorizers = {part: TfidfVectorizer(**PARTS[part]) for part in parts}

    def fit_transform(self, readings: list[str]) -> scipy.sparse.csr_matrix:
        """Learn the vocabularies and IDF weights from readable texts, and return their features."""
        return scipy.sparse.hstack([v.fit_transform(readings) for v in self.vectorizers.values()]).tocsr()

    def transform(self, readings: list[str]) -> scipy.sparse.csr_matrix:
        """The features of readable texts."""
        return scipy.sparse.hstack([v.transform(readings) for v in self.vectorizers.values()]).tocsr()

    def vocabularies(self) -> dict[str, list[str]]:
        """Each part's n-grams in column order."""
        return {part: sorted(v.vocabulary_, key=v.vocabulary_.get) for part, v in self.vectorizers.items()}

    @classmethod
    def restored(cls, vocabularies: dict[str, list[str]], idf: dict[str, np.ndarray]) -> NgramFeatures:
        """The features of a saved model: each part's vocabulary and IDF weights."""
        features = cls(tuple(vocabularies))
        for part, ngrams in vocabularies.items():
            settings = {k: v for k, v in PARTS[part].items() if k != "max_features"}
            vectorizer = TfidfVectorizer(**settings, vocabulary={ngram: i for i, ngram in enumerate(ngrams)})
            vectorizer.idf_ = idf[part].astype(np.float64)
            features.vectorizers[part] = vectorizer
        return features


class NgramClassifier:
    """Scores a prompt (readable reading) for blocking, and names the category it most resembles."""

    def __init__(self, folder: Path = MODEL_DIR):
        meta = json.loads((folder / "ngram_meta.json").read_text(encoding="utf-8"))
        with gzip.open(folder / "ngram_vocabulary.json.gz", "rt", encoding="utf-8") as file:
            vocabularies = json.load(file)
        read_safetensors_header(folder / "ngram_weights.safetensors", MAX_WEIGHTS_BYTES)  # before any loading
        weights = load_file(str(folder / "ngram_weights.safetensors"))
        self.categories: list[str] = meta["categories"]
        features = NgramFeatures.restored(vocabularies, {part: weights[f"idf_{part}"] for part in vocabularies})
        # each part's reader and where its columns start among the features side by side
        offsets = np.cumsum([0] + [len(ngrams) for ngrams in vocabularies.values()])
        self._parts = [(int(offset), TfidfOfOneText(vectorizer))
                       for offset, vectorizer in zip(offsets, features.vectorizers.values())]
        self._block = (weights["block_coef"].astype(np.float64), float(weights["block_intercept"][0]))
        self._category = (weights["category_coef"].astype(np.float64), weights["category_intercept"].astype(np.float64))

    def score(self, text: str) -> tuple[float, str]:
        """The probability that the prompt is to be blocked, and the category it most resembles."""
        reading = readable(text)
        columns, values = [], []
        for offset, reader in self._parts:
            part_columns, part_values = reader.features(reading)
            columns.append(offset + part_columns)
            values.append(part_values)
        columns, values = np.concatenate(columns), np.concatenate(values)
        coef, intercept = self._block
        probability = 1.0 / (1.0 + np.exp(-(float(values @ coef[columns]) + intercept)))
        category_coef, category_intercept = self._category
        category = self.categories[int(np.argmax(category_coef[:, columns] @ values + category_intercept))]
        return float(probability), category


@functools.lru_cache(maxsize=1)
def shipped_classifier() -> NgramClassifier:
    """The classifier shipped in model/ (loaded once per process)."""
    return NgramClassifier()
