"""What a LoRA run trains on, prepared once before its loop: the dataset's latents per aspect bucket with their
prompts, loss masks and per-image conditioning, the class images of prior preservation, and the prompt embeddings
(cached while the text encoders are frozen)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from t2i.models.families import family_of
from t2i.train.buckets import assign_buckets, crop_offset, fit
from t2i.train.config import TrainingConfig
from t2i.train.dataset import load_saved
from t2i.train.family_training import FamilyTraining, training_for
from t2i.train.progress_log import ProgressLog

@dataclass
class TrainingData:
    """Latents per bucket size, the prompt of every image, and the class-image latents for prior preservation;
    the family's per-image conditioning (SDXL's time ids) beside each."""

    latents: dict[tuple[int, int], torch.Tensor]
    members: dict[tuple[int, int], list[int]]  # image indices per bucket, in the order of `latents`
    prompts: list[str]
    class_latents: torch.Tensor | None
    class_prompts: list[str]
    conditions: dict[tuple[int, int], dict[str, torch.Tensor]]
    class_conditions: dict[str, torch.Tensor]
    # loss masks per bucket (image count x 1 x height x width, 1 = trained on), in the order of `latents`; None when
    # no image of the dataset has a mask (then the loss is the plain mean, as it always was)
    masks: dict[tuple[int, int], torch.Tensor] | None = None


def _class_images(pipe, family: FamilyTraining, config: TrainingConfig, prompts: list[str], folder: Path,
                  resolution: int,
                  log: ProgressLog):
    """Class images from the base model (prior preservation), made once and kept for a resumed run."""
    folder.mkdir(exist_ok=True)
    images = []
    for index, prompt in enumerate(prompts):
        path = folder / f"{index:04d}.png"
        if not path.exists():
            image = family.sample(pipe, prompt, config.seed + index, (resolution, resolution))
            image.save(path)
        images.append(Image.open(path).convert("RGB"))
    log.write("class_images", count=len(images))
    return images


def _encoded(family: FamilyTraining, pipe, images, size: tuple[int, int]):
    """Latents and conditioning of images fitted to `size`."""
    latents = family.encode_latents(pipe, [fit(image, size) for image in images])
    conditions = family.image_conditions([image.size for image in images],
                                         [crop_offset(image, size) for image in images], size)
    return latents, conditions


def _fitted_masks(items, size: tuple[int, int]) -> torch.Tensor:
    """The items' loss masks cropped and scaled exactly as their images (`fit`); an image without one is all kept."""
    masks = [fit(item.mask if item.mask is not None else Image.new("L", item.image.size, 255), size) for item in items]
    return torch.stack([torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)[None] for mask in masks])


def prepare_data(pipe, config: TrainingConfig, run_dir: Path, resolution: int, log: ProgressLog,
                 family: FamilyTraining | None = None) -> TrainingData:
    """Bucket and encode the dataset (and class images) once; `family` defaults to the pipeline's."""
    family = family or training_for(family_of(pipe).id)
    dataset = load_saved(run_dir / "dataset")
    images = [item.image for item in dataset.items]
    groups = assign_buckets(images, resolution, family.bucket_multiple(pipe), config.buckets)
    encoded = {size: _encoded(family, pipe, [images[i] for i in members], size) for size, members in groups.items()}
    latents = {size: pair[0] for size, pair in encoded.items()}
    conditions = {size: pair[1] for size, pair in encoded.items()}
    prompts = trained_captions(dataset, config)
    class_latents, class_prompts, class_conditions = None, class_prompts_of(dataset, config), {}
    if config.prior_preservation:
        made = _class_images(pipe, family, config, class_prompts, run_dir / "class_images", resolution, log)
        class_latents, class_conditions = _encoded(family, pipe, made, (resolution, resolution))
    masks = None
    if any(item.mask is not None for item in dataset.items):
        masks = {size: _fitted_masks([dataset.items[i] for i in members], size) for size, members in groups.items()}
    return TrainingData(latents, groups, prompts, class_latents, class_prompts, conditions, class_conditions, masks)


def trained_captions(dataset, config: TrainingConfig) -> list[str]:
    """Each image's prompt as the run trains on it: its caption with the trigger, or the instance prompt."""
    return [with_trigger(item.caption, config) if config.method == "lora" and config.use_captions and item.caption
            else config.instance_text for item in dataset.items]


def class_prompts_of(dataset, config: TrainingConfig) -> list[str]:
    """The prompts of the class images of prior preservation ([] without it)."""
    if not config.prior_preservation:
        return []
    # the regularisation prompts when given; else DreamBooth: the class prompt; a style: each caption without
    # the trigger, so that the base model's own answer to it stays the answer when the trigger is absent
    sources = [without_trigger(item.caption, config) for item in dataset.items if item.caption] \
        if config.method == "lora" else []
    sources = list(config.class_prompts) or sources or [config.class_text]
    return [sources[i % len(sources)] for i in range(config.num_class_images)]


class TextEmbeddings:
    """Prompt embeddings (the family's dict of tensors): cached once when the text encoders are frozen, computed per
    batch when they train (through `encoders`, the prepared ones: DDP averages their LoRA gradients only for calls
    through its wrapper)."""

    def __init__(self, pipe, family: FamilyTraining, encoders: dict, prompts: list[str], trained: bool):
        self.pipe, self.family, self.encoders, self.trained, self.cache = pipe, family, encoders, trained, {}
        if not trained:
            with torch.no_grad():
                for prompt in sorted(set(prompts) | {""}):
                    self.cache[prompt] = family.encode_prompts(pipe, encoders, [prompt])

    def __call__(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        if self.trained:
            return self.family.encode_prompts(self.pipe, self.encoders, prompts)
        with torch.no_grad():  # a caption whose tags were shuffled into an order not seen yet
            for prompt in dict.fromkeys(p for p in prompts if p not in self.cache):
                self.cache[prompt] = self.family.encode_prompts(self.pipe, self.encoders, [prompt])
        return {key: torch.cat([self.cache[p][key] for p in prompts]) for key in self.cache[prompts[0]]}


def with_trigger(caption: str, config: TrainingConfig) -> str:
    """The caption as trained: kept when it already names the trigger (a new colour word), else prefixed with it."""
    words = caption.replace(",", " ").split()
    return caption if config.trigger_word in words else f"{config.trigger_word}, {caption}"


def without_trigger(prompt: str, config: TrainingConfig) -> str:
    words = [w for w in prompt.replace(",", " , ").split() if w != config.trigger_word]
    return " ".join(words).replace(" , ", ", ").strip(" ,") or config.class_text
