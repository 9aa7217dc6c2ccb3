"""Serving on Ray Serve, checked end to end: run by tests/test_ray_serve.py inside a loopback-only network namespace.

`python serve_checks.py REPORT.json DATA_DIR` starts a one-machine Ray cluster, the studio with T2I_BACKEND=ray on
2 replicas and its Gradio app on 127.0.0.1, then:
- mixed requests (base, LoRA A, LoRA B, A+B, ControlNet) sent concurrently through gradio_client and the RayEngine,
  each compared (pixels) with the front end's own engine running the same request alone;
- a blocked prompt, through gradio_client and the RayEngine, against the local engine's refusal;
- Stop at the first progress event of a long run, then the replica's own count of stopped runs;
- kill -9 of the replica running a request, and the image the request still returns.
It writes what it saw to REPORT.json (the test asserts on it) and stops the app and the cluster.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ray
import torch
from diffusers import UNet2DConditionModel
from gradio_client import Client, handle_file
from PIL import Image
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import app  # noqa: E402  (the app's own upload placement and served folders)
from lora_helpers import UNET_TARGETS, random_lora_weights  # noqa: E402
from t2i.embedded.training.train_controlnet import heldout_controls  # noqa: E402
from t2i.generation.progress import GenerationCancelled  # noqa: E402
from t2i.request import GenerationRequest  # noqa: E402
from t2i.settings import EMBEDDED_MODEL_DIR, Settings  # noqa: E402

STEPS = 4
BLOCKED = "a nude woman on a beach"


def make_loras(folder: Path) -> None:
    """Two untrained LoRAs that visibly change the embedded model ('ink', 'dots')."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, seed in (("ink", 0), ("dots", 1)):
        unet = UNet2DConditionModel.from_pretrained(EMBEDDED_MODEL_DIR, subfolder="unet")  # a scratch copy
        torch.manual_seed(seed)
        save_file(random_lora_weights(unet, "unet", UNET_TARGETS), folder / f"{name}.safetensors")


def pixels(image: Image.Image) -> bytes:
    return image.convert("RGB").tobytes()


def mixed_requests(control_files: list[Path]) -> list[dict]:
    """Keyword sets for /generate: base, LoRA A, LoRA B, A+B (prompt tags) and ControlNet, distinct seeds."""
    prompts = ["a red circle on a blue background", "a green square at the top on a white background",
               "a yellow triangle on a black background"]
    tags = ["", " <lora:ink:1.0>", " <lora:dots:0.8>", " <lora:ink:0.7> <lora:dots:0.6>"]
    requests = [{"label": f"{'base' if not tag else tag.strip()} {i}", "prompt": prompts[i % 3] + tag}
                for i in range(2) for tag in tags]
    requests += [{"label": f"controlnet {i}", "prompt": "a blue star on a white background", "control": path}
                 for i, path in enumerate(control_files)]
    for seed, request in enumerate(requests, start=100):
        request["seed"] = seed
    return requests


def through_gradio(url: str, request: dict) -> bytes:
    client = Client(url, verbose=False)
    extra = ({"controlnet_1_enabled": True, "controlnet_1_image": handle_file(str(request["control"]))}
             if "control" in request else {})
    gallery = client.predict(prompt=request["prompt"], seed=request["seed"], steps=STEPS, api_name="/generate",
                             **extra)[1]
    item = gallery[0]
    return pixels(Image.open(item["image"] if isinstance(item, dict) else item[0]))


def local_request(request: dict) -> GenerationRequest:
    units = ({"controlnet": [{"image": Image.open(request["control"]).convert("RGB")}]}
             if "control" in request else {})
    return GenerationRequest(prompt=request["prompt"], seed=request["seed"], steps=STEPS, plugin_units=units)


def replica_state(handle, replica: str, until) -> dict:
    """The named replica's run counts, asked until `until(state)` holds (requests go to either replica)."""
    for _ in range(1000):
        state = handle.state.remote().result()
        if state["replica"] == replica and until(state):
            return state
    raise AssertionError(f"replica {replica} never reported the expected state")


def main(report_path: Path, data: Path) -> None:
    make_loras(data / "loras")
    settings = Settings(backend="ray", ray_replicas="2", ray_replica_cpus=0.5, ray_max_ongoing=2,
                        data_dir=data, rate_limit_per_minute=0)
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    report: dict = {}
    try:
        app.place_uploads(settings)
        from t2i.studio import Studio
        from t2i.ui import CSS, build_app

        studio = Studio(settings)
        rays, local = studio.generator, studio.engine
        demo = build_app(studio)
        demo.launch(server_name="127.0.0.1", server_port=7861, prevent_thread_lock=True, css=CSS,
                    allowed_paths=app.served_folders(settings), quiet=True)
        url = "http://127.0.0.1:7861/"

        # 1. mixed requests at once: 10 through the app, 4 straight to the RayEngine (one with a random seed)
        control_files = []
        for i, (image, _, _) in enumerate(heldout_controls(2)):
            control_files.append(data / f"control-{i}.png")
            image.save(control_files[-1])
        requests = mixed_requests(control_files)
        direct = [GenerationRequest(prompt="a white ring on a gray background" + tag, seed=-1 if i == 0 else 300 + i,
                                    steps=STEPS) for i, tag in enumerate(["", " <lora:ink:1.0>", " <lora:dots:1.0>",
                                                                          " <lora:dots:0.5> <lora:ink:0.5>"])]
        with ThreadPoolExecutor(len(requests) + len(direct)) as pool:
            served = [pool.submit(through_gradio, url, request) for request in requests]
            results = [pool.submit(rays.generate, request) for request in direct]
            served, results = [f.result() for f in served], [f.result() for f in results]
        report["mixed"] = [{"label": request["label"],
                            "same": got == pixels(local.generate(local_request(request)).images[0].image)}
                           for request, got in zip(requests, served)]
        for request, result in zip(direct, results):
            seed = result.images[0].seed
            again = local.generate(GenerationRequest(prompt=request.prompt, seed=seed, steps=STEPS))
            report["mixed"].append({"label": f"direct {request.prompt!r} seed {request.seed} -> {seed}",
                                    "same": pixels(result.images[0].image) == pixels(again.images[0].image)})
        report["served"] = dict(rays.served)

        # 2. a blocked prompt: the replica's refusal is the local engine's, class and message
        refusals = {}
        for name, run in (("local", local.generate), ("ray", rays.generate)):
            try:
                run(GenerationRequest(prompt=BLOCKED, steps=STEPS))
                refusals[name] = None
            except Exception as exc:
                refusals[name] = [type(exc).__name__, str(exc)]
        try:
            Client(url, verbose=False).predict(prompt=BLOCKED, steps=STEPS, api_name="/generate")
            refusals["gradio"] = None
        except Exception as exc:
            refusals["gradio"] = str(exc)
        report["blocked"] = refusals

        # 3. Stop at the first progress event of a long run
        started, cancel, steps_seen = {}, threading.Event(), []

        def stop_at_first(event):
            steps_seen.append(event.step)
            started.update(vars(next(iter(rays.running.values()))))
            cancel.set()

        try:
            rays.generate(GenerationRequest(prompt="a red ring", seed=9, steps=150), stop_at_first, cancel)
            report["stop"] = {"cancelled": False}
        except GenerationCancelled:
            state = replica_state(rays.handle, started["replica"], lambda s: s["running"] == 0)
            report["stop"] = {"cancelled": True, "steps_seen": len(steps_seen), "replica_state": state}

        # 4. kill -9 the replica running a request: the request is retried once and gives the right image
        running, victim = threading.Event(), {}

        def note_replica(event):
            if not running.is_set():
                victim.update(vars(next(iter(rays.running.values()))))
                running.set()

        request = GenerationRequest(prompt="a green circle at the bottom on a white background", seed=21, steps=60)
        served_before = dict(rays.served)
        with ThreadPoolExecutor(1) as pool:
            outcome = pool.submit(rays.generate, request, note_replica)
            running.wait()
            os.kill(victim["pid"], signal.SIGKILL)
            result = outcome.result()
        finished_by = [replica for replica, count in rays.served.items() if count != served_before.get(replica, 0)]
        report["kill"] = {"retries": rays.retries, "killed": victim["replica"],
                          "finished_by": finished_by[0] if len(finished_by) == 1 else None,
                          "same": pixels(result.images[0].image) == pixels(local.generate(request).images[0].image)}
        demo.close()
        rays.close()
    finally:
        report_path.write_text(json.dumps(report, indent=1))
        ray.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
