"""One text's TF-IDF features, as a fitted scikit-learn TfidfVectorizer's `transform` computes them, without its
per-call input validation (about 2 ms a call on 2 cores, three calls per prompt check). tests/test_safety_tfidf.py
checks them, and both classifiers' scores read off them, against scikit-learn's own results."""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer


class TfidfOfOneText:
    """The features of one text under a fitted TfidfVectorizer, as sparse (columns, values)."""

    def __init__(self, vectorizer: TfidfVectorizer):
        if vectorizer.binary or vectorizer.norm not in ("l2", None):
            raise ValueError(f"unsupported TfidfVectorizer settings: binary={vectorizer.binary}, norm={vectorizer.norm}")
        self._analyze = vectorizer.build_analyzer()
        self._vocabulary = vectorizer.vocabulary_
        self._idf = vectorizer.idf_ if vectorizer.use_idf else None
        self._sublinear = vectorizer.sublinear_tf
        self._norm = vectorizer.norm

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The text's non-zero columns and their values (term counts, log-scaled when sublinear, times the IDF
        weights, then scaled to unit length)."""
        counts = Counter(column for column in map(self._vocabulary.get, self._analyze(text)) if column is not None)
        columns = np.array(sorted(counts), dtype=np.int64)  # in column order, as scikit-learn's rows are
        values = np.array([counts[column] for column in columns], dtype=np.float64)
        if self._sublinear:
            values = np.log(values) + 1.0
        if self._idf is not None:
            values = values * self._idf[columns]
        if self._norm == "l2" and len(values):
            squares = 0.0
            for value in values.tolist():  # summed in order, as scikit-learn does, for the same last digit
                squares += value * value
            values = values / np.sqrt(squares)
        return columns, values
