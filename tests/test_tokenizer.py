"""The shipped CLIP-format tokenizer: domain words are single tokens, and any text still tokenizes."""

from transformers import CLIPTokenizer

from t2i.settings import EMBEDDED_MODEL_DIR

TOKENIZER = EMBEDDED_MODEL_DIR / "tokenizer"


def test_clip_format_files_are_shipped():
    assert (TOKENIZER / "vocab.json").exists() and (TOKENIZER / "merges.txt").exists()


def test_domain_words_are_single_tokens():
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER)
    for word in ("circle", "triangle", "purple", "background", "bottom", "teal", "striped"):
        assert len(tokenizer(word).input_ids) == 3, word  # <start> word <end>


def test_unknown_words_still_tokenize_and_pad_to_77():
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER)
    ids = tokenizer("a zyxquv-glorp 日本 ✨", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and tokenizer.unk_token_id not in ids[1:12]
    assert tokenizer.decode(tokenizer("zyxquv glorp").input_ids, skip_special_tokens=True).strip() == "zyxquv glorp"
