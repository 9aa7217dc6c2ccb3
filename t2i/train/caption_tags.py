"""Caption tag shuffling (kohya's --shuffle_caption with --keep_tokens) for comma-separated captions."""

from __future__ import annotations

import torch


def shuffle_tags(caption: str, keep_tokens: int, generator: torch.Generator) -> str:
    """`caption`'s comma-separated tags with all but the first `keep_tokens` in a random order (drawn from
    `generator`), joined by ", "; empty tags are dropped. The kept tags are usually the trigger and class word."""
    tags = [tag.strip() for tag in caption.split(",") if tag.strip()]
    kept, rest = tags[:keep_tokens], tags[keep_tokens:]
    order = torch.randperm(len(rest), generator=generator).tolist()
    return ", ".join(kept + [rest[i] for i in order])
