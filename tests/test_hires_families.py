"""Hires fix, clip skip, embeddings and VAE choice on a family other than SD/SDXL (a tiny SD3): clear refusals,
not a crash or a silently ignored field."""

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from t2i.models.tiny import save_tiny_model
from t2i.request import GenerationRequest, RequestError
from t2i.settings import EMBEDDED_MODEL_DIR

pytestmark = pytest.mark.slow  # builds a tiny SD3 pipeline


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return save_tiny_model("sd3", tmp_path_factory.mktemp("sd3") / "sd3")


@pytest.mark.parametrize("fields, message", [
    ({"hires_scale": 2.0}, "hires fix runs on SD 1.x/2.x and SDXL models; sd3 is a sd3 model"),
    ({"clip_skip": 2}, "clip skip applies to SD 1.x/2.x and SDXL models"),
    ({"prompt": "a sd3emb circle"}, "textual-inversion embeddings work with SD 1.x/2.x and SDXL models"),
    ({"vae": "sd-vae.safetensors"}, "4 latent channels; this model's latents have 16"),
])
def test_other_families_refuse_sd_only_features_clearly(engine, settings, sd3, fields, message):
    settings.embeddings_dir.mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": torch.zeros(1, 32)}, settings.embeddings_dir / "sd3emb.safetensors")
    settings.vae_dir.mkdir(parents=True, exist_ok=True)
    vae = AutoencoderKL.from_pretrained(EMBEDDED_MODEL_DIR / "vae")
    save_file({k: v.float().contiguous() for k, v in vae.state_dict().items()}, settings.vae_dir / "sd-vae.safetensors")
    request = {"prompt": "a circle", "steps": 2, "seed": 1, "model": str(sd3), **fields}
    with pytest.raises(RequestError, match=message):
        engine.generate(GenerationRequest(**request))
