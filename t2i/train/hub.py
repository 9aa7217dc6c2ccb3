"""Push a finished LoRA to the Hugging Face Hub: stage its files under Hub names with a model card, then upload.

The token comes from the caller (the Train tab's field) or huggingface_hub's own lookup (HF_TOKEN, `hf auth
login`). It goes to the Hub client only: it is never printed, logged or written, and error messages are scrubbed
of it. Reaching the Hub (creating the repo) is bounded by T2I_HUB_TIMEOUT, so an offline machine gets a clear
error instead of a hang.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client: its transport errors mean "the Hub could not be reached"
from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id
from safetensors import safe_open

from t2i.request import RequestError

from t2i.train.config import TrainingConfig
from t2i.train.export import library_paths, model_card
from t2i.train.family_training import FAMILY_KEY
from t2i.train.runner import TrainingRunner

HUB_WEIGHTS = "pytorch_lora_weights.safetensors"  # the file diffusers' load_lora_weights(repo_id) picks
CARD = "README.md"


def check_repo_id(repo_id: str) -> str:
    """The repo id, or a RequestError saying what is wrong with it (checked locally, before any network)."""
    if not repo_id:
        raise RequestError("give a Hub repo id, e.g. your-name/my-lora")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        reason = str(exc).splitlines()[0].split(": '")[0].rstrip(".")  # huggingface_hub's rule, without the echo
        raise RequestError(f"{repo_id!r} is not a Hub repo id: {reason}") from exc
    return repo_id


def find_token(token: str = "") -> str:
    """The given token, else huggingface_hub's (HF_TOKEN or a saved login); a RequestError when there is none."""
    found = token or get_token()
    if not found:
        raise RequestError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or paste a token with write "
                           "access")
    return found


def stage(config: TrainingConfig, lora: Path, final_loss: float | None, folder: Path) -> Path:
    """Copy a library LoRA into `folder` as the Hub repo will hold it: diffusers weights under diffusers' default
    name, the kohya/A1111 file as `<name>.safetensors` (the name A1111 shows), and README.md (the model card)."""
    paths = library_paths(lora.parent, config.name)
    for path in (paths.diffusers, paths.kohya):
        if not path.exists():
            raise RequestError(f"{path.name} is no longer in the LoRA library; nothing to push")
    with safe_open(str(paths.diffusers), "pt") as handle:  # what the file says it is, not what the config hoped
        metadata = handle.metadata() or {}
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(paths.diffusers, folder / HUB_WEIGHTS)
    shutil.copyfile(paths.kohya, folder / f"{config.name}.safetensors")
    card = model_card(config, int(metadata.get("t2i_dataset_size", 0)), int(metadata.get("t2i_steps", config.steps)),
                      final_loss, metadata.get("t2i_version", ""), HUB_WEIGHTS, f"{config.name}.safetensors",
                      family=metadata.get(FAMILY_KEY, "sd"))
    (folder / CARD).write_text(card, encoding="utf-8")
    return folder


def _within(seconds: float, call):
    """call() on a daemon thread; TimeoutError when it has not returned in time (a DNS lookup or a silent server
    can block a socket far longer than any timeout the HTTP client sets)."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="hub-push")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def push_folder(folder: Path, repo_id: str, token: str, private: bool, timeout_s: float,
                endpoint: str | None = None) -> str:
    """Create the model repo (if new) and upload `folder` into it; returns the repo's URL."""
    token = find_token(token)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        try:
            url = _within(timeout_s, lambda: api.create_repo(repo_id, private=private, exist_ok=True))
        except TimeoutError:
            raise RequestError(f"the Hub at {api.endpoint} did not answer within {timeout_s:g} s (T2I_HUB_TIMEOUT); "
                               "check the network. Nothing was uploaded") from None
        api.upload_folder(repo_id=url.repo_id, folder_path=folder, commit_message="Upload LoRA from t2i studio")
    except OfflineModeIsEnabled:
        raise RequestError("HF_HUB_OFFLINE is set: this machine keeps off the Hub; unset it to push") from None
    except HfHubHTTPError as exc:
        code = exc.response.status_code if exc.response is not None else 0
        reason = {401: "the Hub refused the token (401); check it", 403: f"the token may not write to {repo_id} "
                  "(403); use a token with write access"}.get(code, f"the Hub answered {code}")
        detail = str(exc).splitlines()[0]
        raise RequestError(f"{reason}: {detail}".replace(token, "***")) from None
    except httpx2.TransportError as exc:
        raise RequestError(f"could not reach the Hub at {api.endpoint} ({exc}); check the network. "
                           "Nothing was uploaded".replace(token, "***")) from None
    return str(url)


def push_run(runner: TrainingRunner, run_id: str, repo_id: str, token: str = "", private: bool = False,
             endpoint: str | None = None) -> str:
    """Push a finished run's LoRA (weights, kohya file, model card) to the Hub repo `repo_id`; its URL."""
    check_repo_id(repo_id)
    token = find_token(token)
    status = runner.status(run_id)
    if status.state != "done":
        raise RequestError(f"run {run_id} is {status.state}; only a finished run's LoRA can be pushed")
    config = TrainingConfig.load(runner.folder(run_id) / "config.json")
    with tempfile.TemporaryDirectory(prefix="t2i-hub-") as scratch:
        folder = stage(config, Path(status.lora), status.final_loss, Path(scratch) / config.name)
        return push_folder(folder, repo_id, token, private, runner.settings.hub_timeout_s, endpoint)
