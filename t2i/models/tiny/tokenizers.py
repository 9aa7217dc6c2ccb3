"""Tokenizers for tiny test models, built offline from a fixed, hand-written word list.

Three kinds, as the real families use: a CLIP-style BPE (`</w>` word ends), a T5-style Unigram (`▁` word
starts) and a byte-level BPE for Qwen/Mistral-style chat encoders (`Ġ` for a leading space), with a chat
template where the pipeline calls `apply_chat_template`. Merges are derived from the word list by a fixed
rule (each word's symbols joined left to right), never trained, so the same code writes the same files.
"""

from __future__ import annotations

from transformers import CLIPTokenizer, Qwen2Tokenizer, T5Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

# prompt words, plus every word of Qwen-Image's and Flux.2's fixed prompt prefixes, so those come out as
# one token per word as with the real tokenizers (Qwen-Image drops exactly the 34 tokens of its prefix)
WORDS = (
    "a an the of and with in on at by for to from is are it this that photo painting portrait landscape "
    "red green blue yellow black white orange purple pink gray brown circle square triangle star shape "
    "cat dog bird tree house car city mountain river sky sea sun moon flower forest street night day "
    "big small large tiny left right top bottom center background object objects scene light dark bright "
    "detailed high quality best masterpiece realistic art style cinematic watercolor sketch drawing "
    "blurry ugly bad lowres describe image detailing color size texture quantity text spatial "
    "relationships system user assistant you ai that reasons about descriptions give structured responses "
    "focusing object relationship attribution actions without speculation think"
).split()
LINE_START_WORDS = ("system", "user", "assistant", "Describe")
PUNCTUATION = tuple(",.:;!?'\"()-")
CLIP_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|vision_start|>",
                "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
MISTRAL_SPECIAL = ("<s>", "</s>", "<pad>", "[IMG]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[INST]", "[/INST]")

# Qwen3-style chat layout; `enable_thinking` (Z-Image passes True) leaves the assistant turn open
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
# Mistral-style layout; Flux.2 sends each message's content as a list of {"type": "text", "text": ...}
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}"
    "{% else %}{% set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') "
    "| join('') %}{% endif %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]{{ text }}[/INST]{% else %}{{ text }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)


def _chain_merges(symbol_lists: list[list[str]], from_end: bool = False) -> list[tuple[str, str]]:
    """Merges that join each symbol list into one token, from its first (or last) symbol on; no duplicates.

    Every merge contains the word's anchor symbol (its first or last), so inside a word only one merge can
    apply at a time and the result does not depend on how merges of different words are ranked.
    """
    merges: dict[tuple[str, str], None] = {}
    for symbols in symbol_lists:
        if from_end:
            joined = symbols[-1]
            for symbol in reversed(symbols[:-1]):
                merges[(symbol, joined)] = None
                joined = symbol + joined
        else:
            joined = symbols[0]
            for symbol in symbols[1:]:
                merges[(joined, symbol)] = None
                joined += symbol
    return list(merges)


def _byte_level_vocab(special: tuple[str, ...]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary: 256 byte symbols, the words after a space, the few line-start words, specials.

    Words after a space start with the anchor `Ġ`; their merges rank first, so they always complete. The
    unanchored line-start words (chat roles, Qwen-Image's "Describe") come after; a test checks each is one token.
    """
    table = bytes_to_unicode()
    after_space = [[table[b] for b in (" " + form).encode()] for base in WORDS for form in (base, base.capitalize())]
    line_start = [[table[b] for b in word.encode()] for word in LINE_START_WORDS]
    merges = _chain_merges(after_space) + _chain_merges(line_start)
    tokens = [table[b] for b in range(256)] + ["".join(m) for m in merges] + list(special)
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}, merges


def clip_tokenizer(max_length: int = 77) -> CLIPTokenizer:
    """A CLIP-style BPE tokenizer (lower-cased words ending in `</w>`) over the fixed word list."""
    alphabet = list(bytes_to_unicode().values())
    merges = _chain_merges([list(word[:-1]) + [word[-1] + "</w>"] for word in WORDS], from_end=True)
    tokens = alphabet + [a + "</w>" for a in alphabet] + ["".join(m) for m in merges] + list(CLIP_SPECIAL)
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def t5_tokenizer(max_length: int = 512) -> T5Tokenizer:
    """A T5-style Unigram tokenizer: whole words (`▁word`) preferred, single characters as the fallback."""
    characters = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + "".join(PUNCTUATION)))
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + word, -8.0) for word in WORDS] + [(char, -10.0) for char in characters]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def qwen_tokenizer(max_length: int = 512) -> Qwen2Tokenizer:
    """A Qwen-style byte-level BPE tokenizer with a Qwen3-style chat template."""
    vocab, merges = _byte_level_vocab(QWEN_SPECIAL)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, model_max_length=max_length,
                               additional_special_tokens=list(QWEN_SPECIAL[1:]))
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def mistral_tokenizer(max_length: int = 512) -> Qwen2Tokenizer:
    """A Mistral-style byte-level BPE tokenizer ([INST] chat markers, `[IMG]` reserved for image tokens)."""
    vocab, merges = _byte_level_vocab(MISTRAL_SPECIAL)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, model_max_length=max_length, bos_token="<s>",
                               eos_token="</s>", pad_token="<pad>", unk_token="<pad>",
                               additional_special_tokens=list(MISTRAL_SPECIAL[3:]))
    tokenizer.chat_template = MISTRAL_CHAT_TEMPLATE
    return tokenizer
