"""The content policy's categories, and the operator's choice of what each one does (T2I_SAFETY_CATEGORIES).

`sexual=block,violence_gore=warn,hate=block,self_harm=off` sets each named category to `block` (the prompt is
refused), `warn` (it runs; the audit log and the server log record the category) or `off` (not checked).
A category left out is blocked. Sexual content involving minors is always checked and always
blocked: a setting that names it with anything but `block` is refused at start.
"""

from __future__ import annotations

CATEGORY_LABELS = {  # the order in which a user is told: the gravest first
    "sexual_minors": "sexual content involving minors",
    "sexual": "sexual content",
    "violence_gore": "graphic violence and gore",
    "hate": "hate and abuse",
    "self_harm": "self-harm",
}
CATEGORIES = tuple(CATEGORY_LABELS)
ALWAYS_BLOCKED = "sexual_minors"
CATEGORY_ACTIONS = ("block", "warn", "off")
DEFAULT_CATEGORIES = "sexual=block,violence_gore=block,hate=block,self_harm=block"
# what a checker reports when it cannot say which category it flagged: treated as the strictest
UNSPECIFIED = "unspecified"


def parse_categories(value: str | dict) -> dict[str, str]:
    """Every category -> its action, from `name=action,...` (or a {name: action} dict); bad input raises ValueError."""
    given = value if isinstance(value, dict) else {}
    if isinstance(value, str):
        for item in (part.strip() for part in value.split(",") if part.strip()):
            name, equals, action = (piece.strip() for piece in item.partition("="))
            if not equals:
                raise ValueError(f"write each category as name=action; got {item!r}")
            if name in given:
                raise ValueError(f"category {name!r} is named twice")
            given[name] = action
    policy = dict.fromkeys(CATEGORIES, "block")  # a category left out is blocked
    for name, action in given.items():
        if name not in CATEGORY_LABELS:
            raise ValueError(f"unknown category {name!r}; known: {', '.join(CATEGORIES)}")
        if action not in CATEGORY_ACTIONS:
            raise ValueError(f"category {name} takes one of {', '.join(CATEGORY_ACTIONS)}; got {action!r}")
        if name == ALWAYS_BLOCKED and action != "block":
            raise ValueError(f"{ALWAYS_BLOCKED} ({CATEGORY_LABELS[ALWAYS_BLOCKED]}) is always blocked and cannot be "
                             f"set to {action!r}")
        policy[name] = action
    return policy
