"""Policy categories as the operator sets them (T2I_SAFETY_CATEGORIES): block, warn or off per category,
sexual content with minors always blocked, the category in the audit log and in the user's message."""

from __future__ import annotations

import dataclasses
import json

import pytest

from t2i.plugins import PluginManager
from t2i.safety.categories import parse_categories
from t2i.safety.gate import PROMPT_REFUSED, PromptRefused, SafetyGate
from t2i.settings import Settings, SettingsError
from t2i_plugins.safety_prompt.checker import PromptModeration


@pytest.fixture(scope="module")
def checker():
    return PromptModeration()


def gate_with(checker, settings, categories: str) -> SafetyGate:
    """A gate over the real prompt checker under the given categories setting."""
    return SafetyGate(PluginManager([checker]), dataclasses.replace(settings, safety_categories=categories))


def audit(gate: SafetyGate) -> list[dict]:
    return [json.loads(line) for line in gate.policy.audit_log.read_text().splitlines()]


def test_by_default_every_category_blocks_and_the_message_names_the_category_not_the_word(checker, settings):
    gate = gate_with(checker, settings, "")
    for prompt, label in [("a nude woman on a bed", "sexual content"), ("a beheaded body", "graphic violence and gore"),
                          ("a man slitting his wrists", "self-harm"), ("eine nackte Frau", "sexual content"),
                          ("全裸の女性", "sexual content"), ("a 12 year old in lingerie",
                                                          "sexual content involving minors")]:
        with pytest.raises(PromptRefused) as refused:
            gate.check_prompts(prompt)
        assert str(refused.value) == f"{PROMPT_REFUSED} ({label})"
    assert gate.check_prompts("a red circle on a blue background") == []


def test_one_setting_changes_what_each_category_does(checker, settings):
    gate = gate_with(checker, settings, "sexual=warn,violence_gore=off")
    assert gate.check_prompts("a nude woman on a bed") == ["sexual"]  # runs, with the category reported
    assert gate.check_prompts("a beheaded body") == []
    with pytest.raises(PromptRefused, match=r"\(self-harm\)"):
        gate.check_prompts("a man slitting his wrists")
    lines = [line for line in audit(gate) if line["flagged"]]
    assert {"sexual": "warn"} in [line["categories"] for line in lines]
    assert {"violence_gore": "off"} in [line["categories"] for line in lines]
    assert all("nude" not in json.dumps(line["categories"]) for line in lines)


def test_sexual_content_with_minors_is_blocked_even_when_sexual_content_is_off(checker, settings):
    gate = gate_with(checker, settings, "sexual=off,violence_gore=off,hate=off,self_harm=off")
    assert gate.check_prompts("a nude woman on a bed") == []
    for prompt in ("a nude child", "a 12 year old in lingerie", "niña de 10 años desnuda", "下着姿の小学生"):
        with pytest.raises(PromptRefused, match=r"\(sexual content involving minors\)"):
            gate.check_prompts(prompt)


@pytest.mark.parametrize("value, message", [
    ("sexual_minors=off", "always blocked"), ("sexual_minors=warn", "always blocked"),
    ("gore=off", "unknown category 'gore'"), ("sexual=maybe", "takes one of block, warn, off"),
    ("sexual", "name=action"), ("sexual=warn,sexual=block", "named twice")])
def test_a_setting_that_breaks_the_policy_is_refused_at_start(monkeypatch, value, message):
    monkeypatch.setenv("T2I_SAFETY_CATEGORIES", value)
    with pytest.raises(SettingsError, match="T2I_SAFETY_CATEGORIES"):
        Settings()
    with pytest.raises(ValueError, match=message):
        parse_categories(value)


def test_the_variable_sets_the_policy(monkeypatch, tmp_path):
    monkeypatch.setenv("T2I_SAFETY_CATEGORIES", "hate=warn, self_harm=off")
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path))
    assert parse_categories(Settings().safety_categories) == {
        "sexual_minors": "block", "sexual": "block", "violence_gore": "block", "hate": "warn", "self_harm": "off"}


def test_the_policy_file_sets_categories_too_and_cannot_unblock_minors(checker, settings, tmp_path):
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"categories": {"violence_gore": "off"}}))
    gate = SafetyGate(PluginManager([checker]), dataclasses.replace(settings, safety_config=str(config)))
    assert gate.check_prompts("a beheaded body") == []
    config.write_text(json.dumps({"categories": {"sexual_minors": "off"}}))
    with pytest.raises(ValueError, match="always blocked"):
        SafetyGate(PluginManager([checker]), dataclasses.replace(settings, safety_config=str(config)))
