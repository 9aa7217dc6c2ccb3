"""The prompt checker's classifiers read their TF-IDF features without scikit-learn's per-call validation
(plugins/safety_prompt/tfidf.py): the features, and so both classifiers' scores, are scikit-learn's own. And a
prompt's reason is the same in every process: a run of letters names the longest term it holds, not the first of a
set (whose order changes between processes)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from profanity_check import predict_prob
from safetensors.numpy import load_file
from sklearn.feature_extraction.text import TfidfVectorizer

from t2i.safety.evaluation import read_set
from t2i_plugins.safety_prompt.classifier import offensive_probability
from t2i_plugins.safety_prompt.ngram import MODEL_DIR, NgramClassifier, NgramFeatures
from t2i_plugins.safety_prompt.normalize import readable
from t2i_plugins.safety_prompt.tfidf import TfidfOfOneText
from t2i_plugins.safety_prompt.wordlists import Terms

DEV = Path(__file__).resolve().parent / "safety_dev" / "dev.jsonl"
PROMPTS = [case["prompt"] for case in read_set(DEV)][:150] + ["", "you are a stupid idiot", "the the the dog dog"]


@pytest.mark.parametrize("settings", [{"sublinear_tf": True}, {"sublinear_tf": False}, {"norm": None},
                                      {"analyzer": "char_wb", "ngram_range": (2, 4), "sublinear_tf": True}])
def test_one_text_features_are_scikit_learns(settings):
    vectorizer = TfidfVectorizer(**settings).fit(PROMPTS[:100])
    reader = TfidfOfOneText(vectorizer)
    reference = vectorizer.transform(PROMPTS).toarray()
    for row, text in zip(reference, PROMPTS):
        columns, values = reader.features(text)
        dense = np.zeros_like(row)
        dense[columns] = values
        np.testing.assert_allclose(dense, row, rtol=0, atol=1e-15)
        assert list(columns) == sorted(columns)


def test_a_vectoriser_it_cannot_read_is_refused():
    with pytest.raises(ValueError, match="binary=True"):
        TfidfOfOneText(TfidfVectorizer(binary=True).fit(PROMPTS[:10]))


def test_the_offensive_language_score_is_profanity_checks():
    expected = predict_prob(PROMPTS)
    np.testing.assert_allclose([offensive_probability(text) for text in PROMPTS], expected, rtol=0, atol=1e-12)


def test_the_ngram_score_is_the_one_scikit_learns_features_give():
    meta = json.loads((MODEL_DIR / "ngram_meta.json").read_text(encoding="utf-8"))
    with gzip.open(MODEL_DIR / "ngram_vocabulary.json.gz", "rt", encoding="utf-8") as file:
        vocabularies = json.load(file)
    weights = load_file(str(MODEL_DIR / "ngram_weights.safetensors"))
    features = NgramFeatures.restored(vocabularies, {part: weights[f"idf_{part}"] for part in vocabularies})
    rows = features.transform([readable(text) for text in PROMPTS])
    block = 1.0 / (1.0 + np.exp(-(rows @ weights["block_coef"].astype(np.float64) + weights["block_intercept"][0])))
    categories = np.argmax(rows @ weights["category_coef"].astype(np.float64).T + weights["category_intercept"], axis=1)
    classifier = NgramClassifier()
    scores = [classifier.score(text) for text in PROMPTS]
    np.testing.assert_allclose([score for score, _ in scores], block, rtol=0, atol=1e-12)
    assert [category for _, category in scores] == [meta["categories"][i] for i in categories]


def test_a_run_of_letters_names_the_longest_term_it_holds():
    # `within` searched a set, whose order changes with the process's hash seed, and named the first term it met:
    # "f e m m e n u e" was "nue" in one process and "femmenue" in another
    terms = Terms(plurals=())
    pairs = [(f"{word}", f"{word}{ending}") for word in ("nue", "sex", "fick", "puta", "transa", "gore", "corte")
             for ending in ("ria", "ndo", "ing", "zone", "en", "tion", "os")]
    for short, long in pairs:
        terms.add(short)
        terms.add(long)
    assert all(terms.within(f"a{long}z") == long for _, long in pairs)
    assert terms.words_longest_first()[0] == "transation"


def test_a_spelled_out_prompts_reason_names_the_longest_term():
    from t2i_plugins.safety_prompt.checker import PromptModeration

    reason = PromptModeration().check_prompt("f e m m e n u e sur la plage").reason
    assert reason == "sexual: term spelled out (femmenue)"
