"""alt-profanity-check's shipped model (TF-IDF + five sigmoid-calibrated linear SVMs), scored directly.

The same arithmetic as its `predict_prob` (checked in tests/test_safety_tfidf.py), without scikit-learn's
per-call input validation, which took about 20 ms of a prompt check's time on 2 cores (its model's, and with
tfidf.py its vectoriser's).
"""

from __future__ import annotations

import numpy as np
from profanity_check.profanity_check import model, vectorizer

from .tfidf import TfidfOfOneText

# per calibrated classifier: the SVM's weights and intercept, and the sigmoid calibration's a and b
_PARTS = [(c.estimator.coef_.ravel(), float(c.estimator.intercept_[0]), float(c.calibrators[0].a_),
           float(c.calibrators[0].b_)) for c in model.calibrated_classifiers_]
_FEATURES = TfidfOfOneText(vectorizer)


def offensive_probability(text: str) -> float:
    """The probability that the text is offensive language, as profanity_check.predict_prob gives it."""
    columns, values = _FEATURES.features(text)
    probabilities = [1.0 / (1.0 + np.exp(a * (float(values @ weights[columns]) + intercept) + b))
                     for weights, intercept, a, b in _PARTS]
    return float(np.mean(probabilities))
