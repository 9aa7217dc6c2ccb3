"""Loss masks reach the training loop: fitted like their images, and the loss counts only the kept pixels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from t2i.models.cache import ModelCache
from t2i.settings import Settings
from t2i.train.config import config_from_preset
from t2i.train.dataset import prepare_dataset
from t2i.train.family_training import training_for
from t2i.train.lora_trainer import Trainee, training_loss
from t2i.train.training_data import TextEmbeddings, prepare_data
from t2i.train.progress_log import ProgressLog


def _dataset(folder, masked: bool):
    """Three wide images (red right half) and, when `masked`, a mask keeping the right half of the first one only."""
    folder.mkdir(parents=True)
    for index in range(3):
        pixels = np.zeros((64, 96, 3), np.uint8)
        pixels[:, 48:] = (220 - 20 * index, 30, 30)
        Image.fromarray(pixels).save(folder / f"{index}.png")
        (folder / f"{index}.txt").write_text("a red square")
    if masked:
        mask = np.zeros((64, 96), np.uint8)
        mask[:, 48:] = 255
        Image.fromarray(mask).save(folder / "0.mask.png")
    return prepare_dataset([folder])


def _setup(tmp_path, masked: bool):
    settings = Settings()
    pipe = ModelCache(replace(settings, device="cpu", dtype="float32", speed="quality")).get("embedded").pipeline
    config = config_from_preset(name="masks", trigger="mqz", prior_preservation=False, batch_size=2, caption_dropout=0.0)
    run = tmp_path / ("masked" if masked else "plain")
    _dataset(tmp_path / f"images-{masked}", masked).save(run / "dataset")
    family = training_for("sd")
    data = prepare_data(pipe, config, run, 64, ProgressLog(run / "progress.jsonl"), family)
    embeddings = TextEmbeddings(pipe, family, {"text_encoder": pipe.text_encoder}, data.prompts, trained=False)
    return Trainee(family, pipe.unet, pipe, family.training_scheduler(pipe)), data, embeddings, config


def test_masks_are_fitted_like_their_images_and_change_the_loss(tmp_path):
    trainee, data, embeddings, config = _setup(tmp_path, masked=True)
    (size, masks), = data.masks.items()  # one wide bucket
    first = data.members[size].index(0)
    # the centre crop of a 96x64 image into its bucket keeps the mask's edge where the image's red edge is
    kept_columns = masks[first, 0].mean(dim=0)
    assert kept_columns[: size[0] // 2 - 4].max() < 0.05 and kept_columns[size[0] // 2 + 4:].min() > 0.95
    others = [i for i in range(len(masks)) if i != first]
    assert torch.equal(masks[others], torch.ones_like(masks[others]))  # no mask: every pixel kept
    with torch.no_grad():
        masked = training_loss(trainee, data, embeddings, config, torch.Generator().manual_seed(3))
        all_kept = replace(data, masks={size: torch.ones_like(masks)})
        unmasked = training_loss(trainee, all_kept, embeddings, config, torch.Generator().manual_seed(3))
        plain_trainee, plain, plain_embeddings, _ = _setup(tmp_path, masked=False)
        assert plain.masks is None
        plain_loss = training_loss(plain_trainee, plain, plain_embeddings, config, torch.Generator().manual_seed(3))
    # all-white masks give the plain mean (same draws); the real mask drops the left half's error
    torch.testing.assert_close(unmasked, plain_loss, rtol=1e-5, atol=1e-6)
    assert abs(masked.item() - unmasked.item()) > 1e-4
