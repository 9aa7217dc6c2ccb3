"""Textual-inversion embeddings in prompts: a name from the embeddings folder, written in the prompt or the
negative prompt, stands for the embedding's learned vectors.

Isolation on a shared pipeline: each embedding is added to the model's tokenizers once, as tokens named after its
content hash (`ti<hash>v0`, `ti<hash>v1`, ...), never after what a user typed. Only the prompts that name the
embedding are rewritten to those tokens, just before encoding, so another request, or one that names a word that
happens to be an embedding elsewhere, encodes exactly as before; the recipe keeps the name as written.
"""

from __future__ import annotations

import re

import torch

from t2i.models.embedding_files import SD_KEY, SDXL_KEYS, EmbeddingFile, EmbeddingLibrary
from t2i.request import RequestError

LOADED_KEY = "textual_inversion"  # model.cache[...]: hashes of the embeddings loaded into that model
FAMILIES = ("sd", "sdxl")  # models whose CLIP tokenizers and encoders take textual inversion
TI_HASHES = "TI hashes"


def _tokens(embedding: EmbeddingFile) -> list[str]:
    return [f"ti{embedding.sha256[:16]}v{i}" for i in range(embedding.token_count)]


def _pattern(name: str) -> re.Pattern:
    # a whole word: `bad-hands` must not match inside `very-bad-hands-5`
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")


def named_embeddings(library: EmbeddingLibrary, *texts: str) -> list[EmbeddingFile]:
    """The embeddings of the folder that `texts` name, each once, in the folder's order."""
    return [library.get(name) for name in library.names() if any(_pattern(name).search(t) for t in texts if t)]


def expand_embeddings(model, library: EmbeddingLibrary, *texts: str) -> list[str]:
    """`texts` with each embedding name replaced by its tokens, which are loaded into `model` on first use
    (the model lock is held)."""
    used = named_embeddings(library, *texts)
    if not used:
        return list(texts)
    for embedding in used:
        _load(model, embedding)
    expanded = []
    for text in texts:
        for embedding in used:
            text = _pattern(embedding.name).sub(" ".join(_tokens(embedding)), text)
        expanded.append(text)
    return expanded


def describe(library: EmbeddingLibrary, *texts: str) -> dict[str, str]:
    """A1111's `TI hashes: "name: hash, ..."` for the embeddings `texts` name (empty when none)."""
    used = named_embeddings(library, *texts)
    return {TI_HASHES: ", ".join(f"{e.name}: {e.short_hash}" for e in used)} if used else {}


def _load(model, embedding: EmbeddingFile) -> None:
    """Add an embedding's vectors to the model's text encoders once, after checking that it fits them."""
    loaded = model.cache.setdefault(LOADED_KEY, set())
    if embedding.sha256 in loaded:
        return
    pipe, family = model.pipeline, model.family
    if family not in FAMILIES:
        raise RequestError(f"textual-inversion embeddings work with SD 1.x/2.x and SDXL models; {model.name} is a "
                           f"{family} model")
    if embedding.family != family:
        made_for, given = ("SDXL", "an SD 1.x/2.x") if embedding.family == "sdxl" else ("SD 1.x/2.x", "an SDXL")
        raise RequestError(f"embedding {embedding.name!r} is for {made_for} models; {model.name} is {given} model")
    targets = {SD_KEY: ("tokenizer", "text_encoder")} if family == "sd" else {
        SDXL_KEYS[0]: ("tokenizer", "text_encoder"), SDXL_KEYS[1]: ("tokenizer_2", "text_encoder_2")}
    for key, (tokenizer_name, encoder_name) in targets.items():
        width = getattr(pipe, encoder_name).get_input_embeddings().weight.shape[1]
        if embedding.vectors[key][1] != width:
            raise RequestError(f"embedding {embedding.name!r} has {embedding.vectors[key][1]}-wide vectors ({key}); "
                               f"this model's {encoder_name.replace('_', ' ')} takes {width} (SD 1.x: 768, SD 2.x: "
                               "1024, SDXL: 768 and 1280)")
    tensors = embedding.tensors()
    # outside inference mode: resized embedding tables must stay ordinary tensors for later (training) use
    with torch.inference_mode(False), torch.no_grad():
        for key, (tokenizer_name, encoder_name) in targets.items():
            pipe.load_textual_inversion(tensors[key], token=_tokens(embedding), tokenizer=getattr(pipe, tokenizer_name),
                                        text_encoder=getattr(pipe, encoder_name))
    loaded.add(embedding.sha256)
