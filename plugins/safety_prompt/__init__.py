"""Prompt moderation: normalisation against evasion (every Unicode letter form, homoglyphs, leetspeak, spacing),
word lists in ten languages per policy category with allow-lists of everyday contexts (lists/, sources in
lists/SOURCES.md), and alt-profanity-check's shipped offensive-language classifier. Runs offline."""

from __future__ import annotations

from t2i.safety.gate import load_policy

from .checker import PromptModeration


def register(settings):
    """The prompt checker with the operator's thresholds ({"thresholds": {"prompt_moderation": {...}}})."""
    policy = load_policy(settings)
    return [PromptModeration(policy.thresholds_for(PromptModeration.name, PromptModeration.default_thresholds))]
