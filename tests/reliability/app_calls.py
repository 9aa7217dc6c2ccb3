"""Calling the running app's /generate through gradio_client, and reading what came back."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import torch
from gradio_client import Client, handle_file
from PIL import Image
from safetensors.torch import save_file

MAX_UPLOAD_MB = 1  # the reliability app's upload cap (T2I_MAX_UPLOAD_MB)
SAFETY_TIMEOUT_S = 5  # its safety timeout: a hung checker costs this much per image; real checkers take far less


@dataclass
class Output:
    """What one /generate call returned: decoded pixels and recipe text per image, and the info box."""

    pixels: list[np.ndarray]
    recipes: list[str]
    info: str

    def same_as(self, other: "Output") -> bool:
        """Identical pixels and recipes, image by image."""
        return (self.info == other.info and self.recipes == other.recipes and len(self.pixels) == len(other.pixels)
                and all(np.array_equal(a, b) for a, b in zip(self.pixels, other.pixels)))


def empty_required(client: Client) -> dict:
    """None for every /generate parameter without a default (e.g. a ControlNet unit's image)."""
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]["parameters"]
    return {p["parameter_name"]: None for p in info if not p["parameter_has_default"]}


def read_output(result) -> Output:
    """An Output from /generate's (preview, gallery, info, seed)."""
    pixels, recipes = [], []
    for item in result[1]:
        with Image.open(item["image"] if isinstance(item, dict) else item[0]) as image:
            recipes.append(image.info.get("parameters", ""))
            pixels.append(np.asarray(image.convert("RGB")))
    return Output(pixels, recipes, result[2])


def generate(client: Client, **fields) -> Output:
    """Run /generate with `fields` (all other parameters at their defaults)."""
    return read_output(client.predict(**{**empty_required(client), **fields}, api_name="/generate"))


def output_files(data_dir: Path) -> dict[Path, str]:
    """Every file under the app's session folders, with its sha256."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (data_dir / "sessions").rglob("*") if p.is_file()}


def outputs_on_tmpfs(data_dir: Path) -> bool:
    """Whether the outputs folder is its own (tiny) tmpfs, so a disk-full test can fill it."""
    return subprocess.run(["mountpoint", "-q", str(data_dir / "sessions")]).returncode == 0


def write_test_loras(folder: Path) -> None:
    """LoRAs `tint_a` and `tint_b` for the embedded model (untrained, strong enough to change every image)."""
    from diffusers import UNet2DConditionModel

    from lora_helpers import UNET_TARGETS, random_lora_weights
    from t2i.settings import EMBEDDED_MODEL_DIR

    unet = UNet2DConditionModel.from_pretrained(EMBEDDED_MODEL_DIR / "unet")
    folder.mkdir(parents=True, exist_ok=True)
    for name, seed in (("tint_a", 1), ("tint_b", 2)):
        torch.manual_seed(seed)
        save_file(random_lora_weights(unet, "unet", UNET_TARGETS, scale=2.0), folder / f"{name}.safetensors")
        unet.delete_adapters("scratch")


def write_control_image(path: Path) -> Path:
    """A held-out shapes-world picture for a ControlNet unit."""
    from t2i.embedded.training.train_controlnet import heldout_controls

    heldout_controls(1)[0][0].save(path)
    return path


def request_mix(control_image: Path) -> dict[str, dict]:
    """The load mix: name -> /generate fields (few steps: it measures isolation and latency, not quality). 10 steps,
    not fewer: at 6 the A+B image is still noise, which NudeNet's view of a small image read as an exposed breast at
    0.48 (withheld); at 10 the images are the model's own (tests/test_safety_image.py) and nothing is detected."""
    base = dict(prompt="a large red circle in the middle on a white background", seed=21, steps=10)
    return {
        "base": base,
        "lora_a": {**base, "lora_1_enabled": True, "lora_1_name": "tint_a"},
        "lora_b": {**base, "lora_1_enabled": True, "lora_1_name": "tint_b", "lora_1_weight": 0.8},
        "lora_a_b": {**base, "prompt": base["prompt"] + " <lora:tint_a:1> <lora:tint_b:0.8>"},
        "controlnet": {**base, "prompt": "a blue shape on a yellow background", "controlnet_1_enabled": True,
                       "controlnet_1_image": handle_file(str(control_image))},
        "batch": {**base, "seed": 33, "batch_size": 2},
    }


@dataclass
class RawAnswer:
    """What a plain-HTTP API call got: the HTTP status of each step, the final event and its data."""

    statuses: list[int]
    event: str
    data: str


@dataclass
class Endpoint:
    """A named endpoint of the running app, called over plain HTTP (no client-side upload of local paths)."""

    url: str
    api_name: str
    parameters: list[dict] = field(repr=False)

    @classmethod
    def of(cls, client: Client, url: str, api_name: str) -> "Endpoint":
        info = client.view_api(print_info=False, return_format="dict")["named_endpoints"][f"/{api_name}"]
        return cls(url, api_name, info["parameters"])

    def call(self, **fields) -> RawAnswer:
        """Call with `fields`, every other parameter at its default; the final event of the answer."""
        data = [fields.get(p["parameter_name"], p["parameter_default"]) for p in self.parameters]
        with httpx.Client(base_url=self.url, timeout=300) as http:
            posted = http.post(f"gradio_api/call/{self.api_name}", json={"data": data})
            if posted.status_code != 200:
                return RawAnswer([posted.status_code], "", posted.text)
            streamed = http.get(f"gradio_api/call/{self.api_name}/{posted.json()['event_id']}")
        lines = streamed.text.splitlines()
        events = [line.split(":", 1)[1].strip() for line in lines if line.startswith("event:")]
        payloads = [line.split(":", 1)[1].strip() for line in lines if line.startswith("data:")]
        return RawAnswer([posted.status_code, streamed.status_code], events[-1] if events else "",
                         payloads[-1] if payloads else "")
