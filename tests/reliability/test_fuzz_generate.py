"""/generate's parameters fuzzed with hypothesis over plain HTTP (fixed seed, 60 examples).

Every answer is a valid image or a clear error (never an HTTP 5xx, never our catch-all "generation failed",
which marks an exception nobody anticipated), and afterwards the server still answers a normal request
byte for byte as before.
"""

from __future__ import annotations

import collections
import io
import json
import math

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

from app_calls import Endpoint, generate
from t2i.request import MAX_SEED

pytestmark = pytest.mark.slow  # the real app (reliability suite)

NORMAL = dict(prompt="a purple star at the bottom right on a white background", seed=12, steps=6)
SAMPLERS = ["Euler", "Euler a", "DPM++ 2M", "DDIM"]
UNEXPECTED = "generation failed"  # the generate tab's message for an exception that is not a RequestError

texts = st.one_of(st.text(max_size=40), st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
                  st.text(alphabet="\x00\x07\x1b\r\n\t\u202e\ufeff<>:()[]{}%", max_size=20),
                  st.just("a red circle " * 400))  # past the prompt length limit
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70))
oddities = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.lists(st.integers(), max_size=2))
# a valid request (kept small: a few steps, at most 2x2 images of 64-80 pixels) ...
VALID = {
    "prompt": st.text(min_size=1, max_size=120).filter(str.strip),
    "negative_prompt": st.text(max_size=60),
    "model": st.sampled_from(["", "embedded"]),
    "sampler": st.sampled_from(SAMPLERS),
    "steps": st.integers(1, 4),
    "cfg": st.floats(0, 30),
    "width": st.sampled_from([0, 64, 72]),
    "height": st.sampled_from([0, 64, 80]),
    "seed": st.integers(-1, MAX_SEED),
    "batch_count": st.integers(1, 2),
    "batch_size": st.integers(1, 2),
    "strength": st.floats(0.01, 1),
}
# ... in which up to two fields are hostile
HOSTILE = {
    "prompt": st.one_of(texts, oddities),
    "negative_prompt": st.one_of(texts, oddities),
    "styles": st.one_of(st.lists(texts, max_size=2), oddities),
    "model": st.one_of(st.sampled_from(["../../etc", "/etc/passwd", "no/such-model"]), texts, oddities),
    "sampler": st.one_of(texts, oddities),
    "steps": st.one_of(st.sampled_from([0, -1, 151, 10**9, 2.5]), numbers, oddities),
    "cfg": st.one_of(numbers, oddities),
    "width": st.one_of(st.sampled_from([8, 63, -64, 4096, 100_000, 64.5]), numbers, oddities),
    "height": st.one_of(st.sampled_from([7, -8, 64.0]), numbers, oddities),
    "seed": st.one_of(st.sampled_from([-2, MAX_SEED + 1, 2**64]), numbers, oddities),
    "batch_count": st.one_of(st.sampled_from([0, -1, 17, 1.5]), numbers, oddities),
    "batch_size": st.one_of(st.sampled_from([0, 17, 0.5]), numbers, oddities),
    "strength": st.one_of(numbers, oddities),
}


@st.composite
def requests(draw) -> dict:
    """A valid request with up to two of its fields replaced by hostile values."""
    fields = draw(st.fixed_dictionaries(VALID))
    for name in draw(st.lists(st.sampled_from(sorted(HOSTILE)), max_size=2, unique=True)):
        fields[name] = draw(HOSTILE[name])
    return fields


def json_safe(value):
    """NaN and infinities as JSON cannot carry them (the HTTP client would refuse to send them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


@pytest.fixture(scope="module")
def reference(client):
    return generate(client, **NORMAL)


@pytest.fixture(scope="module")
def endpoint(client, reliability_url, reference) -> Endpoint:
    """/generate over plain HTTP, once the reference output is taken."""
    return Endpoint.of(client, reliability_url, "generate")


def check_answer(fields: dict, answer) -> None:
    """An HTTP status under 500, and a clear error or the images the fields ask for."""
    assert all(status < 500 for status in answer.statuses), (fields, answer)
    assert answer.event in ("complete", "error"), (fields, answer)
    if answer.event == "error":
        message = (json.loads(answer.data) or {}).get("error") if answer.data.startswith("{") else answer.data
        assert message and not message.startswith(UNEXPECTED), (fields, message)
        return
    _, gallery, info, _ = json.loads(answer.data)
    withheld = info.count("withheld by the safety checker")  # a noisy random image can be flagged
    assert len(gallery) + withheld == fields["batch_count"] * fields["batch_size"], (fields, gallery, info)
    with httpx.Client(timeout=60) as http:
        for item in gallery:
            with Image.open(io.BytesIO(http.get(item["image"]["url"]).content)) as image:
                image.load()  # a whole PNG, of the asked size, with its recipe
                assert image.size == (fields["width"] or 64, fields["height"] or 64), fields
                assert "Seed: " in image.info["parameters"], image.info


def test_fuzzed_generate_parameters_get_an_image_or_a_clear_error_and_the_server_serves_on(client, endpoint,
                                                                                          reference, report):
    outcomes: collections.Counter = collections.Counter()  # answers by event, to check both kinds were exercised

    @seed(20261122)
    # no shrinking: a failure reports its first example at once instead of running for minutes
    @settings(max_examples=60, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(requests())
    def fuzz(fields):
        sent = {name: json_safe(value) for name, value in fields.items()}
        answer = endpoint.call(**sent)
        check_answer(sent, answer)
        outcomes[answer.event] += 1

    fuzz()
    print(f"fuzzed /generate answers: {dict(outcomes)}")
    report["hostile"].extend([True] * outcomes["error"])
    assert outcomes["complete"] >= 5 and outcomes["error"] >= 20, outcomes  # both paths were exercised
    assert generate(client, **NORMAL).same_as(reference)
