"""VAE choice: a VAE from the VAE folder decodes instead of the model's own, is recorded with its hash, replays,
and a VAE that does not fit the model (latent channels, scaling, layout) or is a pickle is refused clearly."""

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from ldm_layout import vae_key
from t2i.models.file_hash import file_sha256
from t2i.recipes.infotext import infotext, png_bytes
from t2i.request import GenerationRequest, RequestError
from t2i.settings import EMBEDDED_MODEL_DIR

PROMPT = "a large yellow square in the center on a gray background"
RED_SHIFT = 0.5  # added to the decoder's red output, in the VAE's [-1, 1] range: about +64 levels of red


def _warm_state():
    """The embedded VAE's weights with its decoder pushed toward red."""
    vae = AutoencoderKL.from_pretrained(EMBEDDED_MODEL_DIR / "vae")
    state = {key: value.float().contiguous() for key, value in vae.state_dict().items()}
    state["decoder.conv_out.bias"] = state["decoder.conv_out.bias"] + torch.tensor([RED_SHIFT, 0.0, 0.0])
    return vae, state


@pytest.fixture(scope="module")
def vae_files(settings):
    """A diffusers-keyed and an A1111/LDM-keyed copy of a 'warm' VAE in the VAE folder."""
    settings.vae_dir.mkdir(parents=True, exist_ok=True)
    vae, state = _warm_state()
    save_file(state, settings.vae_dir / "warm.safetensors")
    save_file({"first_stage_model." + vae_key(key, vae.config): value for key, value in state.items()},
              settings.vae_dir / "warm-ldm.safetensors")
    return settings.vae_dir


def run(engine, **fields):
    return engine.generate(GenerationRequest(**{"prompt": PROMPT, "steps": 4, "seed": 2, **fields})).images[0]


def test_a_vae_swap_changes_decoding_and_is_recorded(engine, vae_files):
    own = run(engine)
    warm = run(engine, vae="warm.safetensors")
    shift = np.asarray(warm.image, np.float32).mean(axis=(0, 1)) - np.asarray(own.image, np.float32).mean(axis=(0, 1))
    assert shift[0] > 40 and abs(shift[1]) < 12 and abs(shift[2]) < 12, shift  # red up, the rest as before
    sha = file_sha256(vae_files / "warm.safetensors")
    assert warm.parameters["vae"] == "warm.safetensors"
    assert f"VAE hash: {sha[:10]}, VAE: warm.safetensors" in infotext(warm.parameters)
    assert "VAE" not in infotext(own.parameters)
    again = run(engine, vae="warm.safetensors")
    assert png_bytes(again.image, again.parameters) == png_bytes(warm.image, warm.parameters)
    assert run(engine).image.tobytes() == own.image.tobytes()  # the model's own VAE is back afterwards
    ldm = run(engine, vae="warm-ldm.safetensors")  # the A1111 layout decodes the same
    assert np.abs(np.asarray(ldm.image, np.int16) - np.asarray(warm.image, np.int16)).max() <= 1


def test_vaes_that_do_not_fit_are_refused(engine, settings, vae_files):
    wide = AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, latent_channels=16,
                         down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",))
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, vae_files / "flux-like.safetensors")
    with pytest.raises(RequestError, match="16 latent channels; this model's latents have 4"):
        run(engine, vae="flux-like.safetensors", steps=1)
    folder = vae_files / "sdxl-like"
    vae, _ = _warm_state()
    vae.register_to_config(scaling_factor=0.13025)
    vae.save_pretrained(folder, safe_serialization=True)
    with pytest.raises(RequestError, match="scaling_factor 0.13025; this model's latents use 0.45"):
        run(engine, vae="sdxl-like", steps=1)
    (vae_files / "old.pt").write_bytes(b"not read")
    with pytest.raises(RequestError, match="pickle file"):
        run(engine, vae="old.pt", steps=1)
    with pytest.raises(RequestError, match="unknown VAE 'nope'; available: .*warm.safetensors"):
        run(engine, vae="nope", steps=1)
    assert json.loads((folder / "config.json").read_text())["latent_channels"] == 4


def test_an_unknown_name_in_an_empty_folder_does_not_show_the_servers_path(tmp_path):
    from t2i.models.file_library import FileLibrary

    library = FileLibrary("VAE", tmp_path / "secret-place")
    with pytest.raises(RequestError, match="unknown VAE 'x'; available: none") as refused:
        library.path("x")
    assert "secret-place" not in str(refused.value)
