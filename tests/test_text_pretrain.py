"""The text-encoder pretraining stage: its labels, and that a short run learns to read a caption's column."""

import random
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import CLIPTextModel, CLIPTokenizer

from t2i.embedded.captions import caption
from t2i.embedded.training.text_pretrain import HEADS, IGNORE, make_heads, pretrain_text_encoder, scene_labels
from t2i.embedded.training.tokenizer_build import MAX_LENGTH, build_tokenizer
from t2i.embedded.training.train_model import described_caption
from t2i.embedded.world import POSITIONS, Scene, ShapeObject, random_scene


def test_labels_say_what_a_caption_states():
    single = scene_labels(Scene((ShapeObject("star", "red", "small", "top right"),), "blue"))
    assert (single["column"], single["row"]) == POSITIONS["top right"] == (2, 0)
    assert single["objects"] == 0 and single["second_shape"] == IGNORE and single["relation"] == IGNORE
    pair = scene_labels(random_scene(random.Random(0), two_objects=True))
    assert pair["objects"] == 1 and pair["column"] == IGNORE and pair["size"] == IGNORE
    assert pair["relation"] != IGNORE and pair["second_colour"] != IGNORE
    assert set(single) == set(pair) == set(HEADS)


@pytest.mark.slow  # a training run (about 2 minutes on 2 cores)
def test_short_pretraining_reads_the_column_from_unseen_wordings(tmp_path):
    build_tokenizer(tmp_path / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path / "tokenizer")
    rng = random.Random(0)
    scenes = [random_scene(rng) for _ in range(2000)]
    cfg = SimpleNamespace(work=tmp_path, seed=0, text_steps=100, text_batch=32, text_lr=1e-3, checkpoint_every=50)
    torch.set_num_threads(2)
    pretrain_text_encoder(cfg, tokenizer, scenes, described_caption, torch.device("cpu"))
    assert (tmp_path / "text_ckpt" / "heads.safetensors").exists()

    encoder = CLIPTextModel.from_pretrained(tmp_path / "text_encoder").eval()
    heads = make_heads()
    heads.load_state_dict(load_file(str(tmp_path / "text_ckpt" / "heads.safetensors")))
    test_rng = random.Random(99)
    held = [random_scene(test_rng) for _ in range(100)]
    texts = [caption(s, test_rng, eval_wording=True) for s in held]  # templates training never used
    ids = tokenizer(texts, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        predicted = heads["column"](encoder(ids).pooler_output).argmax(dim=1).tolist()
    right = sum(p == POSITIONS[s.objects[0].position][0] for p, s in zip(predicted, held))
    assert right >= 90, f"column read right for {right} of 100 captions"
