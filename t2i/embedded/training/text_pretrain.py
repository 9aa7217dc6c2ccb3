"""Pretrain the embedded text encoder to read captions before the denoiser learns from it.

SD's UNet starts from a CLIP text encoder that already tells "left" from "right". Ours is trained from scratch,
and trained jointly with the UNet from random weights it can settle on outputs that barely differ between words
the UNet needs apart (measured: the encodings of "... at the left ..." and "... at the right ..." a distance 0.6
apart, "top" and "bottom" 30, so the UNet placed objects in a column chosen by the seed). This stage trains the
encoder, with small linear heads on its pooled output, to predict every attribute a caption states: shapes,
colours, a single object's size, row and column, the background, the relation of a pair. The heads are dropped
afterwards; the denoiser stages use the encoder frozen (training_batches.load_text_encoder says why).
"""

from __future__ import annotations

import random
import sys

import torch
import torch.nn.functional as F
from tqdm import tqdm

from t2i.embedded.training.architecture import TEXT_WIDTH, make_text_encoder
from t2i.embedded.training.checkpoints import load_checkpoint, save_checkpoint
from t2i.embedded.training.tokenizer_build import MAX_LENGTH
from t2i.embedded.world import BACKGROUND_ONLY_COLOURS, COLOURS, POSITIONS, RELATIONS, SHAPES, SIZES

TEXT_SEED_OFFSET = 3_000_017
IGNORE = -100  # label of an attribute the caption does not state (cross-entropy skips it)
HEADS = {
    "objects": 2,  # one or two
    "first_shape": len(SHAPES), "first_colour": len(COLOURS),
    "second_shape": len(SHAPES), "second_colour": len(COLOURS),
    "size": len(SIZES), "row": 3, "column": 3,  # of a single object (pairs state them only by relation)
    "background": len(COLOURS) + len(BACKGROUND_ONLY_COLOURS),
    "relation": len(RELATIONS),
}
_BACKGROUNDS = (*COLOURS, *BACKGROUND_ONLY_COLOURS)


def scene_labels(scene) -> dict[str, int]:
    """Class index per head for what a caption of `scene` states (IGNORE where it states nothing)."""
    first = scene.objects[0]
    labels = {"objects": len(scene.objects) - 1, "first_shape": SHAPES.index(first.shape),
              "first_colour": list(COLOURS).index(first.colour), "background": _BACKGROUNDS.index(scene.background)}
    if len(scene.objects) == 1:
        column, row = POSITIONS[first.position]
        labels.update(second_shape=IGNORE, second_colour=IGNORE, relation=IGNORE,
                      size=list(SIZES).index(first.size), row=row, column=column)
    else:
        second = scene.objects[1]
        labels.update(second_shape=SHAPES.index(second.shape), second_colour=list(COLOURS).index(second.colour),
                      relation=RELATIONS.index(scene.relation), size=IGNORE, row=IGNORE, column=IGNORE)
    return labels


def make_heads() -> torch.nn.ModuleDict:
    return torch.nn.ModuleDict({name: torch.nn.Linear(TEXT_WIDTH, n) for name, n in HEADS.items()})


def heads_loss(heads: torch.nn.ModuleDict, pooled: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over heads of the cross-entropy of the attributes the captions state."""
    total = pooled.new_zeros(())
    for name, head in heads.items():
        if (labels[name] != IGNORE).any():
            total = total + F.cross_entropy(head(pooled), labels[name], ignore_index=IGNORE)
    return total


def pretrain_text_encoder(cfg, tokenizer, scenes: list, caption_fn, device: torch.device) -> None:
    """Train a fresh text encoder on captions of `scenes`; save it to `cfg.work / "text_encoder"`.

    `caption_fn(scene, rng)` words a scene as the denoiser stage will (filler words included, never empty).
    Resumes from `cfg.work / "text_ckpt"`; every batch comes from an RNG seeded by (seed, step).
    """
    done = cfg.work / "text_encoder" / "model.safetensors"
    if done.exists():
        return
    torch.manual_seed(cfg.seed + TEXT_SEED_OFFSET)
    encoder = make_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id).to(device)
    heads = make_heads().to(device)
    params = list(encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.text_lr, weight_decay=1e-2)
    models = {"text_encoder": encoder, "heads": heads}
    start = load_checkpoint(cfg.work / "text_ckpt", models, opt)
    bar = tqdm(range(start, cfg.text_steps), initial=start, total=cfg.text_steps, desc="text", file=sys.stdout)
    for step in bar:
        rng = random.Random(cfg.seed * 1_000_003 + TEXT_SEED_OFFSET + step)
        batch = [scenes[i] for i in rng.sample(range(len(scenes)), cfg.text_batch)]
        ids = tokenizer([caption_fn(s, rng) for s in batch], padding="max_length", max_length=MAX_LENGTH,
                        truncation=True, return_tensors="pt").input_ids.to(device)
        labels = {name: torch.tensor([scene_labels(s)[name] for s in batch], device=device) for name in HEADS}
        for group in opt.param_groups:  # linear warm-up, then constant
            group["lr"] = cfg.text_lr * min(1.0, (step + 1) / 100)
        loss = heads_loss(heads, encoder(ids).pooler_output, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.text_steps:
            save_checkpoint(cfg.work / "text_ckpt", models, opt, step + 1)
    encoder.save_pretrained(cfg.work / "text_encoder", safe_serialization=True)
