"""An nf4 (bitsandbytes) base where bitsandbytes is installed (the `gpu` extra; CI does not install it, so these skip
there): its bytes are counted whole, and on a CPU the base stays refused because diffusers refuses first (issue 30:
bitsandbytes 0.50.2 itself quantises and runs 4-bit layers on this CPU; diffusers 0.42.1's loader does not let it)."""

from __future__ import annotations

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is the gpu extra (requirements-gpu.txt); not installed")


def _nf4_linear(out_features: int, in_features: int) -> torch.nn.Module:
    """A Linear4bit quantised on the CPU as diffusers' BitsAndBytesConfig(load_in_4bit, nf4) does by default: blocks of
    64 weights, one float32 absmax each (no double quantisation)."""
    layer = bnb.nn.Linear4bit(in_features, out_features, quant_type="nf4", compress_statistics=False,
                              compute_dtype=torch.float32)
    weight = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(0))
    layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4", compress_statistics=False)
    return layer.to("cpu")  # bitsandbytes quantises as the weight moves to its device


def test_an_nf4_layer_is_counted_with_its_block_scales():
    from t2i.train.quantised_base import base_bytes, quantised_layers

    layer = _nf4_linear(128, 256)
    assert isinstance(layer.weight, bnb.nn.Params4bit) and layer.weight.dtype == torch.uint8
    weights = 128 * 256
    # 4 bits a weight, a float32 absmax per 64 weights, bitsandbytes' 16-entry float32 code table, the float32 bias
    assert base_bytes(layer) == weights // 2 + 4 * weights // 64 + 16 * 4 + 128 * 4
    assert base_bytes(layer) < 0.16 * weights * 4
    assert quantised_layers(layer) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is the CPU's")
def test_diffusers_refuses_a_bitsandbytes_base_on_the_cpu(tmp_path):
    """Why `check_base_quantization` and T2I_QUANTIZE=nf4 refuse a CPU: diffusers' bitsandbytes loader demands a GPU
    before it reads a weight. If this starts failing, diffusers lifted that check: see the quantised-base section
    of docs/training_experiments.md."""
    from diffusers import BitsAndBytesConfig, FluxTransformer2DModel

    from t2i.models.tiny import save_tiny_model

    model = save_tiny_model("flux1", tmp_path / "flux", variant="dev")
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    with pytest.raises(RuntimeError, match="No GPU found. A GPU is needed for quantization."):
        FluxTransformer2DModel.from_pretrained(model, subfolder="transformer", quantization_config=config,
                                               torch_dtype=torch.float32, device_map="cpu")
