"""Caption tag shuffling (kohya's --shuffle_caption with --keep_tokens) for comma-separated captions."""

from __future__ import annotations

import itertools
import math

import torch


def shuffle_tags(caption: str, keep_tokens: int, generator: torch.Generator) -> str:
    """`caption`'s comma-separated tags with all but the first `keep_tokens` in a random order (drawn from
    `generator`), joined by ", "; empty tags are dropped. The kept tags are usually the trigger and class word."""
    tags = [tag.strip() for tag in caption.split(",") if tag.strip()]
    kept, rest = tags[:keep_tokens], tags[keep_tokens:]
    order = torch.randperm(len(rest), generator=generator).tolist()
    return ", ".join(kept + [rest[i] for i in order])


def every_tag_order(caption: str, keep_tokens: int, limit: int) -> list[str] | None:
    """Every caption `shuffle_tags` can return for `caption` (each distinct order of its shuffled tags), or None when
    there are more than `limit`: the prompts a run with shuffled tags can ask for, to encode before it starts."""
    tags = [tag.strip() for tag in caption.split(",") if tag.strip()]
    kept, rest = tags[:keep_tokens], tags[keep_tokens:]
    if math.factorial(len(rest)) > limit:  # (repeated tags make fewer distinct orders; not worth counting)
        return None
    return list(dict.fromkeys(", ".join(kept + list(order)) for order in itertools.permutations(rest)))
