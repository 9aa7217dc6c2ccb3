"""Serving on Ray, the parts that need no cluster: the settings, the Serve options they make, the routing id, and
requests/results crossing a process boundary (pickled, as Ray sends them)."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from t2i.generation.progress import ProgressEvent
from t2i.request import GeneratedImage, GenerationRequest, GenerationResult
from t2i.safety.gate import PromptRefused
from t2i.settings import Settings, SettingsError, parse_replicas

pytest.importorskip("ray", reason="Ray is the optional `ray` extra (requirements-ray.txt)")
from t2i.ray.backend import deployment_options, request_routing_id  # noqa: E402
from t2i.ray.deployment import EngineReplica, Finished, Refused  # noqa: E402


@pytest.mark.parametrize("value, bounds", [("2", (2, 2)), ("1-4", (1, 4)), ("0-3", (0, 3)), (" 3 ", (3, 3))])
def test_replicas_are_a_number_or_autoscaling_bounds(value, bounds):
    assert parse_replicas(value) == bounds


@pytest.mark.parametrize("value, message", [("0", "at least 1 replica"), ("4-2", "MIN at most MAX"),
                                            ("two", "MIN-MAX autoscaling bounds"), ("1-", "MIN-MAX"),
                                            ("-1", "MIN-MAX")])
def test_bad_replicas_name_the_variable_and_what_it_takes(value, message):
    with pytest.raises(SettingsError, match=f"T2I_RAY_REPLICAS='{value}'.*{message}"):
        Settings(ray_replicas=value)


def test_backend_and_resources_are_checked():
    with pytest.raises(SettingsError, match="T2I_BACKEND='spark'"):
        Settings(backend="spark")
    with pytest.raises(SettingsError, match="T2I_RAY_REPLICA_CPUS=0"):
        Settings(ray_replica_cpus=0)


def test_serve_options_follow_the_settings():
    fixed = deployment_options(Settings(ray_replicas="2", ray_replica_cpus=0.5, ray_replica_gpus=1,
                                        ray_max_ongoing=3, ray_max_queued=10))
    assert fixed == {"num_replicas": 2, "max_ongoing_requests": 3, "max_queued_requests": 10,
                     "ray_actor_options": {"num_cpus": 0.5, "num_gpus": 1.0}}
    scaled = deployment_options(Settings(ray_replicas="1-4", ray_max_ongoing=2))
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2}
    for options in (fixed, scaled):  # Serve's own validation takes them
        EngineReplica.options(**options)


@pytest.fixture(scope="module")
def lora_library(tmp_path_factory):
    """Two LoRA files with different content, and a copy of the first under another name."""
    from safetensors.torch import save_file
    import torch

    folder = tmp_path_factory.mktemp("loras")
    for name, seed in (("ink", 0), ("dots", 1)):
        generator = torch.Generator().manual_seed(seed)
        save_file({"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.randn(2, 32, generator=generator),
                   "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.randn(32, 2, generator=generator)},
                  folder / f"{name}.safetensors")
    shutil.copy(folder / "ink.safetensors", folder / "ink-copy.safetensors")
    return folder


def test_the_routing_id_is_the_model_and_the_loras_content(lora_library):
    from t2i.plugins import PluginManager
    from t2i_plugins.lora import LoraAdapter

    settings = Settings(lora_dir=lora_library)
    plugins = PluginManager([LoraAdapter(settings)])

    def routed(prompt="a red circle", units=(), model=""):
        request = GenerationRequest(prompt=prompt, model=model,
                                    plugin_units={"lora": [{"name": n, "weight": w} for n, w in units]})
        return request_routing_id(request, settings, plugins)

    both = routed(units=[("ink", 1.0), ("dots", 0.5)])
    assert both == routed(units=[("dots", 0.2), ("ink", 0.7)])  # weights and order do not matter
    assert both == routed("a red circle <lora:dots:1> <lora:ink:0.3>")  # prompt tags count the same
    assert routed(units=[("ink-copy", 1.0)]) == routed(units=[("ink", 1.0)])  # content, not the name
    assert len({routed(), routed(units=[("ink", 1.0)]), routed(units=[("dots", 1.0)]), both}) == 4
    assert routed().startswith(f"{settings.default_model}|") and routed(model="other").startswith("other|")
    assert routed(units=[("missing", 1.0)]) == routed()  # the replica's engine refuses it with its message


def test_requests_results_and_errors_cross_a_process_boundary_intact():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = Image.fromarray(rng.integers(0, 2, (64, 64), dtype=np.uint8) * 255)
    request = GenerationRequest(prompt="a red circle", seed=5, init_image=image, mask=mask, styles=("ink",),
                                plugin_units={"controlnet": [{"image": image, "scale": 0.5}]})
    copy = pickle.loads(pickle.dumps(request))
    assert copy.recipe() == request.recipe() and copy.mode == "inpaint"
    assert copy.init_image.tobytes() == image.tobytes() and copy.mask.tobytes() == mask.tobytes()
    assert copy.plugin_units["controlnet"][0]["image"].tobytes() == image.tobytes()
    result = GenerationResult([GeneratedImage(image, 5, {"seed": 5}, "notice")], model="embedded", mode="inpaint")
    finished = pickle.loads(pickle.dumps(Finished(result, "replica-1")))
    assert finished.result.images[0].image.tobytes() == image.tobytes() and finished.result == result
    event = pickle.loads(pickle.dumps(ProgressEvent(3, 20, 1, 1, previews=[image, None])))
    assert event.step == 3 and event.previews[0].tobytes() == image.tobytes() and event.previews[1] is None
    refused = pickle.loads(pickle.dumps(Refused(PromptRefused("this prompt was refused"))))
    assert type(refused.error) is PromptRefused and str(refused.error) == "this prompt was refused"
