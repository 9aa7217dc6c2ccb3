"""Write a finished LoRA: diffusers/PEFT file with our metadata, a kohya/A1111-keyed copy, and a model card.

The kohya copy is written the way kohya-ss/sd-scripts names its networks (networks/lora.py, lora_flux.py): SD 1.x/2.x
`lora_unet_` + diffusers' UNet names and `lora_te_text_model_...`; SDXL `lora_unet_` + the original (SGM) UNet names
and `lora_te1_`/`lora_te2_`; Flux.1 the BFL layout (t2i/train/kohya_flux.py). Its metadata carries the `ss_*` keys
sd-scripts writes that apply to our runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import diffusers
from huggingface_hub import ModelCardData
from safetensors import safe_open
from safetensors.torch import save_file

from t2i.models.access import HUB_ID
from t2i_plugins.lora.files import KOHYA_SUFFIX

from t2i.train.config import TrainingConfig
from t2i.train.family_training import FAMILY_KEY

TRIGGER_KEY = "t2i_trigger_words"  # JSON list; the LoRA plugin reads it (and kohya's ss_tag_frequency)


@dataclass
class ExportedLora:
    """Paths of the files one training wrote into the LoRA library."""

    diffusers: Path
    kohya: Path
    card: Path


def library_paths(folder: Path, name: str) -> ExportedLora:
    """Where the files of the LoRA `name` live in the library folder."""
    return ExportedLora(folder / f"{name}.safetensors", folder / f"{name}{KOHYA_SUFFIX}.safetensors",
                        folder / f"{name}.README.md")


# sd-scripts' ss_base_model_version per family (library/model_util.py, sdxl_model_util.py, flux_utils.py)
KOHYA_MODEL_VERSIONS = {"sd": "sd_v1", "sdxl": "sdxl_base_v1-0", "flux1": "flux1"}
KOHYA_NETWORK_MODULES = {"sd": "networks.lora", "sdxl": "networks.lora", "flux1": "networks.lora_flux"}


def lora_metadata(config: TrainingConfig, dataset_size: int, steps: int, version: str, family: str = "sd",
                  resolution: int = 0) -> dict[str, str]:
    """Safetensors metadata (all values strings, as the format requires): ours (t2i_*) and sd-scripts' (ss_*)."""
    metadata = {TRIGGER_KEY: json.dumps([config.trigger_word]), FAMILY_KEY: family,
                "t2i_base_model": config.base_model,
                "t2i_method": config.method, "t2i_steps": str(steps), "t2i_rank": str(config.rank),
                "t2i_alpha": str(config.alpha), "t2i_targets": config.targets, "t2i_dataset_size": str(dataset_size),
                "t2i_version": version,
                "ss_tag_frequency": json.dumps({config.trigger_word: {config.trigger_word: dataset_size}}),
                "ss_network_dim": str(config.rank), "ss_network_alpha": str(config.alpha),
                "ss_network_module": KOHYA_NETWORK_MODULES[family], "ss_base_model_version": KOHYA_MODEL_VERSIONS[family],
                "ss_output_name": config.name, "ss_max_train_steps": str(steps), "ss_steps": str(steps),
                "ss_learning_rate": str(config.learning_rate), "ss_unet_lr": str(config.learning_rate),
                "ss_text_encoder_lr": str(config.text_encoder_lr if config.train_text_encoder else 0.0),
                "ss_num_train_images": str(dataset_size), "ss_seed": str(config.seed),
                "ss_gradient_accumulation_steps": str(config.gradient_accumulation),
                "ss_caption_dropout_rate": str(config.caption_dropout), "ss_enable_bucket": str(config.buckets),
                "ss_prior_loss_weight": str(config.prior_loss_weight if config.prior_preservation else 0.0),
                "ss_cache_latents": "True"}
    if resolution:
        metadata["ss_resolution"] = f"({resolution}, {resolution})"
    if config.targets == "attention+conv":  # how kohya's sd-scripts records a LoCon network
        metadata["ss_network_args"] = json.dumps({"conv_dim": str(config.rank), "conv_alpha": str(config.alpha)})
    return metadata


def _write_atomically(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    os.chmod(tmp, 0o644)  # library files are read by the app, maybe as another user
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sorted_sets(adapter_config: dict) -> dict:
    """peft keeps `target_modules` as a set, whose order changes with each process's string hashing; sorted, the
    same run writes the same metadata."""
    return {key: sorted(value) if isinstance(value, set) else value for key, value in adapter_config.items()}


def export_lora(folder: Path, config: TrainingConfig, pipeline_class: str, layers: dict[str, dict],
                adapter_configs: dict[str, dict], kohya, metadata: dict[str, str], card: str) -> ExportedLora:
    """Write `<name>.safetensors` (what `pipeline_class`'s save_lora_weights writes, plus metadata),
    `<name>.kohya.safetensors` (`kohya` maps the diffusers file's tensors to kohya's) and `<name>.README.md` into the LoRA library folder; each file
    appears whole or not at all. `layers` and `adapter_configs` are keyed by component ("unet", "text_encoder"...)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = library_paths(folder, config.name)
    arguments = {f"{component}_lora_layers": weights for component, weights in layers.items()}
    arguments.update({f"{component}_lora_adapter_metadata": _sorted_sets(value)
                      for component, value in adapter_configs.items()})
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as scratch:  # hidden from the library listing
        getattr(diffusers, pipeline_class).save_lora_weights(
            scratch, **arguments, weight_name="lora.safetensors", safe_serialization=True)
        with safe_open(Path(scratch) / "lora.safetensors", "pt") as handle:
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
            merged = {**(handle.metadata() or {}), **metadata}
    _write_atomically(paths.diffusers, lambda tmp: save_file(tensors, str(tmp), metadata=merged))
    kohya_meta = {k: v for k, v in metadata.items() if not k.startswith("lora_adapter")}
    _write_atomically(paths.kohya, lambda tmp: save_file(kohya(tensors), str(tmp),
                                                         metadata=kohya_meta))
    _write_atomically(paths.card, lambda tmp: tmp.write_text(card, encoding="utf-8"))
    return paths


def hub_base_model(spec: str) -> str | None:
    """The base model as a Hub id when it is one (the Hub refuses other `base_model` values); else None."""
    if spec == "embedded" or Path(spec).expanduser().exists() or Path(spec).suffix in (".safetensors", ".ckpt"):
        return None
    return spec if HUB_ID.match(spec) else None


# the Hub's usual tag for each family's models
FAMILY_TAGS = {"sd": "stable-diffusion", "sdxl": "stable-diffusion-xl", "flux1": "flux"}


def card_front_matter(config: TrainingConfig, family: str = "sd") -> str:
    """The model card's YAML metadata: base model (a Hub id only), trigger word as instance prompt, tags."""
    tags = ["text-to-image", FAMILY_TAGS[family], "diffusers", "lora", "t2i"]
    if config.method == "dreambooth":
        tags.append("dreambooth")
    data = ModelCardData(base_model=hub_base_model(config.base_model), library_name="diffusers", license="other",
                         tags=tags, instance_prompt=config.trigger_word)
    return f"---\n{data.to_yaml()}\n---\n"


def model_card(config: TrainingConfig, dataset_size: int, steps: int, final_loss: float | None, version: str,
               weights_file: str = "", kohya_file: str = "", family: str = "sd") -> str:
    """A Hugging Face model card for the LoRA; the file names default to the library's."""
    weights_file = weights_file or f"{config.name}.safetensors"
    kohya_file = kohya_file or f"{config.name}{KOHYA_SUFFIX}.safetensors"
    loss = f"{final_loss:.4f}" if final_loss is not None else "n/a"
    base = hub_base_model(config.base_model) or Path(config.base_model).name  # no local paths in a shared card
    layers = "transformer" if family == "flux1" else f"UNet ({config.targets})"
    return card_front_matter(config, family) + f"""
# {config.name}

A {'DreamBooth-' if config.method == 'dreambooth' else ''}LoRA for `{base}`, trained with t2i studio
{version}. Write **`{config.trigger_word}`** in the prompt to call it up.

| setting | value |
|---|---|
| method | {config.method} |
| images | {dataset_size} |
| steps | {steps} (batch {config.batch_size} x {config.gradient_accumulation} accumulation) |
| rank / alpha | {config.rank} / {config.alpha} |
| model family | {family} |
| layers | {layers} |
| learning rate | {config.learning_rate} |
| text encoder trained | {config.train_text_encoder} |
| prior preservation | {config.prior_preservation} |
| final loss | {loss} |

Files: `{weights_file}` (diffusers/PEFT keys; `pipe.load_lora_weights(path)`), and
`{kohya_file}` (kohya/A1111 keys, for AUTOMATIC1111 and ComfyUI).
"""
