"""Build the embedded model's CLIP-format byte-level BPE tokenizer (vocab.json + merges.txt).

Merges are learned on shapes-world captions with the `tokenizers` BPE trainer, so every domain
word is a single token, and the vocabulary starts with all 256 byte symbols (as CLIP's does),
so any text still tokenizes. CLIPTokenizer/CLIPTokenizerFast load the result unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import regex
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers.convert_slow_tokenizer import bytes_to_unicode

from t2i.embedded.captions import corpus

# CLIP's own word split (lower-cased text)
CLIP_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
SPECIAL_TOKENS = ["<|startoftext|>", "<|endoftext|>"]
MAX_LENGTH = 77
EXTRA_WORDS = (  # common prompt words beyond the shapes world, so pasted prompts stay short
    "photo photograph painting portrait landscape detailed high quality best masterpiece realistic art style "
    "of the and with in on a an at by for to from is very beautiful cute dark light bright colorful simple "
    "background shape object scene cinematic watercolor pixel sketch drawing render lowres blurry ugly bad"
)


def _byte_words(text: str) -> list[str]:
    table = bytes_to_unicode()
    return ["".join(table[b] for b in word.encode("utf-8")) for word in CLIP_PATTERN.findall(text.lower())]


def build_tokenizer(out_dir: Path, n_merges: int = 700, n_captions: int = 20000) -> None:
    """Learn merges on the caption corpus and write vocab.json, merges.txt and tokenizer configs."""
    texts = corpus(n_captions) + [EXTRA_WORDS] * 50
    alphabet = list(bytes_to_unicode().values())
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=2 * len(alphabet) + n_merges, initial_alphabet=alphabet, end_of_word_suffix="</w>",
        show_progress=False, min_frequency=2,
    )
    bpe.train_from_iterator((" ".join(_byte_words(t)) for t in texts), trainer)
    merges = [tuple(m) if isinstance(m, (list, tuple)) else tuple(m.split(" "))
              for m in json.loads(bpe.to_str())["model"]["merges"]]

    # CLIP layout: byte symbols, byte symbols + </w>, one token per merge, then the special tokens
    tokens = alphabet + [a + "</w>" for a in alphabet] + ["".join(m) for m in merges] + SPECIAL_TOKENS
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": SPECIAL_TOKENS[0], "eos_token": SPECIAL_TOKENS[1],
        "pad_token": SPECIAL_TOKENS[1], "unk_token": SPECIAL_TOKENS[1]}))
    (out_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LENGTH, "do_lower_case": True,
        "bos_token": SPECIAL_TOKENS[0], "eos_token": SPECIAL_TOKENS[1], "pad_token": SPECIAL_TOKENS[1],
        "unk_token": SPECIAL_TOKENS[1], "errors": "replace"}, indent=2))
