"""Settings: every knob is an environment variable, declared once below with its default, type, limits and help.

`Settings()` reads the T2I_* variables (pydantic-settings) and validates them (pydantic); keyword arguments
override variables. A bad value raises SettingsError, one line per variable naming it and what it takes; a
program calls `load_settings()` first thing, so a bad variable stops it at start (status 2), not at the first
generation. Settings is a frozen pydantic dataclass rather than a BaseSettings model so that
`dataclasses.replace(settings, ...)` keeps working, re-validated. The README's settings tables are printed from
these declarations (scripts/settings_table.py) and checked against them (tests/test_settings.py).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from t2i.safety.categories import DEFAULT_CATEGORIES, parse_categories

EMBEDDED_MODEL_DIR = Path(__file__).resolve().parent / "embedded" / "model"
_TMP = Path(tempfile.gettempdir())

PreviewMethod = Literal["auto", "full", "approx"]
SafetyAction = Literal["block", "blur", "black"]
PREVIEW_METHODS: tuple[str, ...] = get_args(PreviewMethod)
SAFETY_ACTIONS: tuple[str, ...] = get_args(SafetyAction)
SPEED_PRESETS = ("auto", "quality", "fast")
_SPEED_TAKES = "use auto, quality, fast, or a comma list of channels_last, low_precision, cache=N"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class SettingsError(ValueError):
    """A variable holds a value its setting does not accept; the message names it and what it takes."""


def parse_speed(value: str) -> str | dict[str, int]:
    """T2I_SPEED's grammar: a preset (auto, quality, fast), or a comma list of switches as {switch: value}
    (channels_last and low_precision: 1; cache=N: N >= 1); anything else raises ValueError."""
    value = value.strip().lower()
    if value in SPEED_PRESETS:
        return value
    switches = {}
    for switch in (s.strip() for s in value.split(",") if s.strip()):
        name, _, number = switch.partition("=")
        if name in ("channels_last", "low_precision") and not number:
            switches[name] = 1
        elif name == "cache" and number.isdigit() and int(number) >= 1:
            switches[name] = int(number)
        else:
            raise ValueError(f"T2I_SPEED: unknown switch {switch!r}; {_SPEED_TAKES}")
    if not switches:
        raise ValueError(f"T2I_SPEED: no switch given; {_SPEED_TAKES}")
    return switches


def parse_replicas(value: str) -> tuple[int, int]:
    """T2I_RAY_REPLICAS's grammar: `N` (N >= 1) or `MIN-MAX` autoscaling bounds (0 <= MIN <= MAX, MAX >= 1), as
    (min, max); anything else raises ValueError."""
    low, dash, high = value.strip().partition("-")
    if not low.isdigit() or (dash and not high.isdigit()):
        raise ValueError("use a number of replicas, or MIN-MAX autoscaling bounds (e.g. 1-4)")
    bounds = (int(low), int(high)) if dash else (int(low), int(low))
    if bounds[1] < 1 or bounds[0] > bounds[1]:
        raise ValueError("needs at least 1 replica, and MIN at most MAX")
    return bounds


def _check_backend(value: str) -> str:
    if value == "ray" and importlib.util.find_spec("ray") is None:  # found, not imported: start stays light
        raise ValueError("needs Ray, the `ray` extra: pip install -e '.[ray]' (requirements-ray.txt)")
    return value


def _check_replicas(value: str) -> str:
    parse_replicas(value)
    return value


def _check_speed(value: str) -> str:
    parse_speed(value)
    return value


def _check_device(value: str) -> str:
    if not _DEVICE.fullmatch(value):
        raise ValueError("use auto, cpu, cuda, cuda:N or mps")
    return value


def _split(separator: str):
    """A validator that reads a variable's `separator`-separated list (empty items dropped) as a tuple."""
    return BeforeValidator(lambda value: tuple(part.strip() for part in value.split(separator) if part.strip())
                           if isinstance(value, str) else value)


Folders = Annotated[tuple[Path, ...], _split(os.pathsep)]
Names = Annotated[tuple[str, ...], _split(",")]
Speed = Annotated[str, AfterValidator(_check_speed)]
Device = Annotated[str, AfterValidator(_check_device)]
Replicas = Annotated[str, AfterValidator(_check_replicas)]
Backend = Annotated[Literal["local", "ray"], AfterValidator(_check_backend)]
SafetyCategories = Annotated[str, AfterValidator(lambda value: parse_categories(value) and value)]


def _variable(name: str, default: Any, help: str, *, shown: str | None = None, safety: bool = False,
              **limits) -> Any:
    """The field read from variable `name`: its default (a callable: computed from the fields declared above
    it), help text, README table (the safety one or the general one), default as the README shows it, limits."""
    default_or_factory = {"default_factory": default} if callable(default) else {"default": default}
    return Field(alias=name, description=help, json_schema_extra={"shown": shown, "safety": safety},
                 **default_or_factory, **limits)


@dataclass(frozen=True, kw_only=True, config=ConfigDict(validate_by_name=True, allow_inf_nan=False))
class Settings:
    """Every setting, read from its T2I_* variable unless given as a keyword argument."""

    default_model: str = _variable(
        "T2I_MODEL", "embedded", "default model: `embedded`, a diffusers folder, a `.safetensors` file or a hub id "
        "(`--model`)")
    data_dir: Path = _variable(
        "T2I_DATA_DIR", _TMP / "t2i", "per-session outputs and uploads (must be outside the app folder)",
        shown="`$TMPDIR/t2i`")
    model_dir: Path = _variable(
        "T2I_MODEL_DIR", lambda data: data["data_dir"] / "models",
        "models offered by name (diffusers folders and `.safetensors` checkpoints)", shown="`$T2I_DATA_DIR/models`")
    model_local_paths: bool = _variable(
        "T2I_MODEL_LOCAL_PATHS", False, "1: web requests may name any local model path (a single-user laptop; a "
        "shared server should not)")
    device: Device = _variable(
        "T2I_DEVICE", "auto", "`cpu`, `cuda`, `cuda:1`, `mps`; `auto` picks CUDA, then MPS, then CPU")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = _variable(
        "T2I_DTYPE", "auto", "`float32`, `float16`, `bfloat16`; `auto` is float16 on CUDA, float32 elsewhere")
    host: str = _variable("T2I_HOST", "127.0.0.1", "server address (`--host`)")
    port: int = _variable("T2I_PORT", 7860, "server port (`--port`)", ge=1, le=65535)
    share: bool = _variable("T2I_SHARE", False, "1: a Gradio share link (`--share`)")
    model_cache_size: int = _variable("T2I_MODEL_CACHE_SIZE", 2, "models kept loaded", ge=1)
    model_cache_gb: float = _variable(
        "T2I_MODEL_CACHE_GB", 0.0, "GiB the cached models' weights may hold on their device (0: only the count "
        "bounds the cache)", ge=0)
    # quantised weights and offloading (t2i/models/memory.py)
    quantize: Literal["none", "int8", "int4", "nf4", "auto"] = _variable(
        "T2I_QUANTIZE", "auto", "weights of the denoiser and large text encoders: `int8` (torchao), `int4` (SDNQ), "
        "`nf4` (bitsandbytes, CUDA only, while loading), `none`; `auto` quantises (int8) only when the weights do "
        "not fit in the device's free memory")
    offload: Literal["none", "model", "sequential", "group", "auto"] = _variable(
        "T2I_OFFLOAD", "auto", "CUDA only: `model` (whole components to the GPU in turn), `sequential` (layer by "
        "layer: least memory, slowest), `group` (blocks, streamed), `none`; `auto` offloads only when the "
        "weights do not fit in free GPU memory")
    single_file_config: str = _variable(
        "T2I_SINGLE_FILE_CONFIG", "", "local diffusers folder whose configs single-file checkpoints load with "
        "(unset: the local hub cache)")
    max_prompt_chars: int = _variable("T2I_MAX_PROMPT_CHARS", 4000, "request limit: prompt length", ge=1)
    max_side: int = _variable("T2I_MAX_SIDE", 2048, "request limit: image width or height", ge=64)
    max_pixels: int = _variable("T2I_MAX_PIXELS", 1536 * 1536, "request limit: width × height", shown="1536²",
                                ge=64 * 64)
    max_steps: int = _variable("T2I_MAX_STEPS", 150, "request limit: sampling steps", ge=1)
    max_images: int = _variable("T2I_MAX_IMAGES", 16, "request limit: batch count × batch size", ge=1)
    max_upload_mb: int = _variable("T2I_MAX_UPLOAD_MB", 20, "upload size cap", ge=1)
    queue_size: int = _variable("T2I_QUEUE_SIZE", 32, "jobs waiting before \"queue full\"", ge=1)
    browser_secret: str = _variable(
        "T2I_BROWSER_SECRET", "", "key that encrypts what the page keeps in the browser (its training runs)",
        shown="made once, in `$T2I_DATA_DIR/browser-secret`")
    upload_ttl_s: int = _variable(
        "T2I_UPLOAD_TTL_S", 3600, "backstop for uploads of sessions that never closed: swept when unused this many "
        "seconds (0: off)", ge=0)
    styles_dirs: Folders = _variable("T2I_STYLES_DIRS", (), "extra style folders (`:`-separated)")
    styles_max_kb: int = _variable("T2I_STYLES_MAX_KB", 1024, "size cap of a style file uploaded in the Styles tab",
                                   ge=1)
    watermark: bool = _variable(
        "T2I_WATERMARK", False, "1: invisible watermark (dwtDctSvd in luma, SDXL's bits) on outputs; images under "
        "256×256 are enlarged ×k, nearest neighbour")
    c2pa_key: str = _variable("T2I_C2PA_KEY", "", "PEM private key: with `T2I_C2PA_CERT`, outputs get a signed C2PA "
                              "manifest")
    c2pa_cert: str = _variable("T2I_C2PA_CERT", "", "PEM certificate chain for `T2I_C2PA_KEY`")
    plugin_dirs: Folders = _variable("T2I_PLUGIN_DIRS", (), "extra plugin folders (`:`-separated)")
    entry_point_plugins: bool = _variable("T2I_ENTRY_POINT_PLUGINS", True, "0: installed (entry-point) plugins "
                                          "stay out")
    disabled_plugins: Names = _variable("T2I_DISABLED_PLUGINS", (), "plugins switched off (comma-separated names)")
    rate_limit_per_minute: float = _variable(
        "T2I_RATE_LIMIT", 60.0, "generate requests per minute per client address, bursts up to the same number "
        "(0: no limit)", ge=0)
    # the A1111 and OpenAI images APIs beside the page (t2i/api/)
    api: bool = _variable("T2I_API", False, "1: serve the AUTOMATIC1111 `/sdapi/v1` and OpenAI `/v1/images` APIs "
                          "on the app's port (`--api`)")
    api_key: str = _variable(
        "T2I_API_KEY", "", "key those APIs require (`Authorization: Bearer KEY`, or Basic with KEY as the password); "
        "required when the server listens beyond loopback")
    allowed_hosts: Names = _variable(
        "T2I_ALLOWED_HOSTS", (), "extra Host names the server answers besides 127.0.0.1 and localhost "
        "(comma-separated, e.g. `host.docker.internal`); unset beyond loopback: any")
    lora_dir: Path = _variable("T2I_LORA_DIR", lambda data: data["data_dir"] / "loras",
                               "LoRA library (uploads and trained LoRAs)", shown="`$T2I_DATA_DIR/loras`")
    lora_cache_size: int = _variable("T2I_LORA_CACHE_SIZE", 8, "LoRAs kept loaded per model", ge=1)
    lora_max_mb: int = _variable("T2I_LORA_MAX_MB", 1024, "LoRA file size cap", ge=1)
    lora_local_paths: bool = _variable(
        "T2I_LORA_LOCAL_PATHS", False, "1: LoRAs may be named by file path, not only from the library (the CLI "
        "allows it; a shared server should not)")
    preview_every: int = _variable("T2I_PREVIEW_EVERY", 2, "live preview cadence in steps", ge=1)
    preview_method: PreviewMethod = _variable(
        "T2I_PREVIEW_METHOD", "auto", "`full` (the model's VAE decodes it), `approx` (a linear latent-to-RGB map, "
        "free but ~50/255 off in colour on the embedded model), `auto` (full for VAEs under 5 M parameters)")
    speed: Speed = _variable(
        "T2I_SPEED", "auto", "`quality`, `fast` (see Speed below) or a comma list of switches "
        "(`channels_last,low_precision,cache=2`); `auto` is `fast` for SD-size UNets, `quality` for the embedded "
        "model")
    batch_max: int = _variable(
        "T2I_BATCH_MAX", 1, "batching (see Batching below): images per pipeline call (1: off); on, a batched image "
        "can differ from the same request run alone by a level in a few pixels", ge=1)
    batch_window_ms: float = _variable("T2I_BATCH_WINDOW_MS", 30.0, "how long a request waits for batch companions",
                                       ge=0)
    train_threads: int = _variable(
        "T2I_TRAIN_THREADS", 0, "CPU threads of a training process (0: half the cores, the rest left to generation)",
        ge=0)
    # multi-process training (t2i/train/launch.py)
    train_processes: int = _variable(
        "T2I_TRAIN_PROCESSES", 1, "processes one training run uses (Accelerate: one per GPU with NCCL, gloo on CPU); "
        "each draws its own batches, so a step trains processes × batch size images (`train --processes`)", ge=1)
    train_accelerate_config: str = _variable(
        "T2I_TRAIN_ACCELERATE_CONFIG", "", "an `accelerate launch` config file for multi-process training (shipped, "
        "untested here: `t2i/train/accelerate_configs/deepspeed_zero2.yaml`, `fsdp.yaml`)")
    train_lock: Path = _variable("T2I_TRAIN_LOCK", _TMP / "t2i-training.lock",
                                 "lock file that lets one training run at a time on this machine",
                                 shown="`$TMPDIR/t2i-training.lock`")
    hub_timeout_s: float = _variable("T2I_HUB_TIMEOUT", 20.0, "seconds the trainer's Hub push waits for the Hub to "
                                     "answer", gt=0)
    controlnet_dirs: Folders = _variable("T2I_CONTROLNET_DIRS", (), "ControlNet library folders (`:`-separated)")
    annotators: str = _variable("T2I_ANNOTATORS", "lllyasviel/Annotators", "where HED, MiDaS, OpenPose, … weights "
                                "load from (a folder holding the files, or a hub id)")
    # wildcards, X/Y/Z plots and history (t2i/generation/wildcards.py, t2i/grid/, t2i/web/history.py)
    wildcards_dir: Path = _variable("T2I_WILDCARDS_DIR", lambda data: data["data_dir"] / "wildcards",
                                    "wildcard files: `__name__` in a prompt takes a line of `name.txt`",
                                    shown="`$T2I_DATA_DIR/wildcards`")
    wildcards_max_kb: int = _variable("T2I_WILDCARDS_MAX_KB", 256, "size cap of one wildcard file", ge=1)
    grid_max_steps: int = _variable(
        "T2I_GRID_MAX_STEPS", 2000, "time budget of one X/Y/Z plot: sampling steps of all its cells together "
                                    "(its cells also count against `T2I_MAX_IMAGES`)", ge=1)
    grid_max_pixels: int = _variable("T2I_GRID_MAX_PIXELS", 4096 * 4096, "size cap of an X/Y/Z grid image",
                                     shown="4096²", ge=64 * 64)
    history_max: int = _variable("T2I_HISTORY_MAX", 200, "results kept in each browser session's history", ge=1)
    history_days: float = _variable("T2I_HISTORY_DAYS", 7.0, "days a result stays in its session's history", gt=0)
    # hires fix, VAE choice and textual-inversion embeddings (t2i/generation/hires.py, t2i/models/vae_choice.py,
    # t2i/models/embedding_files.py)
    upscaler_dir: Path = _variable(
        "T2I_UPSCALER_DIR", lambda data: data["data_dir"] / "upscalers", "hires fix model upscalers (ESRGAN-family "
        "`.safetensors` that spandrel reads), offered by file name beside the shipped `shapes-compact-2x`",
        shown="`$T2I_DATA_DIR/upscalers`")
    vae_dir: Path = _variable(
        "T2I_VAE_DIR", lambda data: data["data_dir"] / "vae", "VAEs offered in the VAE box (`.safetensors` files "
        "and diffusers folders; `--vae NAME`)", shown="`$T2I_DATA_DIR/vae`")
    embeddings_dir: Path = _variable(
        "T2I_EMBEDDINGS_DIR", lambda data: data["data_dir"] / "embeddings", "textual-inversion embeddings "
        "(A1111/Civitai `.safetensors`), used by file name in prompts (`--embeddings-dir`)",
        shown="`$T2I_DATA_DIR/embeddings`")
    safety_action: SafetyAction = _variable(
        "T2I_SAFETY_ACTION", "block", "a flagged image is withheld (`block`), blurred (`blur`) or blacked out "
        "(`black`); clients cannot change it", safety=True)
    safety_categories: SafetyCategories = _variable(
        "T2I_SAFETY_CATEGORIES", DEFAULT_CATEGORIES, "prompt categories and what each does, `name=action` "
        "(`block`, `warn` or `off`), comma-separated, for `sexual`, `violence_gore`, `hate`, `self_harm` (one "
        "left out: `block`); `sexual_minors` is always blocked and cannot be changed", safety=True)
    safety_checkers: Names = _variable(
        "T2I_SAFETY_CHECKERS", (), "comma-separated checker names to run (default: every loaded checker)",
        safety=True)
    safety_timeout_s: float = _variable(
        "T2I_SAFETY_TIMEOUT", 10.0, "seconds a checker may take before its silence counts as a flag", gt=0,
        safety=True)
    safety_audit_log: str = _variable(
        "T2I_SAFETY_AUDIT_LOG", "", "one JSON line per verdict: time, request id, what (prompt, negative prompt, "
        "image, preview, upload), checker, flagged, reason, scores, seconds; no prompt text, no image data",
        shown="`$T2I_DATA_DIR/safety_audit.jsonl`", safety=True)
    safety_allow_unchecked_images: bool = _variable(
        "T2I_SAFETY_ALLOW_UNCHECKED", False, "1 serves images when no image checker could load", safety=True)
    safety_config: str = _variable(
        "T2I_SAFETY_CONFIG", "", "a JSON file with any of `action`, `categories`, `checkers`, `timeout_s`, "
        "`audit_log`, `allow_unchecked_images` (overriding the variables) and `thresholds` per checker", safety=True)
    safety_sd_checker: str = _variable(
        "T2I_SD_SAFETY_CHECKER", "CompVis/stable-diffusion-safety-checker", "diffusers' "
        "StableDiffusionSafetyChecker: a local folder, or a hub id found in the local hub cache (empty: off)",
        safety=True)
    # serving on Ray (t2i/ray/): the front end hands model work to Ray Serve replicas, each holding an Engine
    backend: Backend = _variable(
        "T2I_BACKEND", "local", "where model work runs: `local` (this process) or `ray` (Ray Serve replicas; needs "
        "the `ray` extra, see Scaling out on Ray)")
    ray_address: str = _variable(
        "T2I_RAY_ADDRESS", "", "Ray cluster to join (`auto`, `HOST:6379`, `ray://HOST:10001`); empty starts a "
        "one-machine cluster")
    ray_replicas: Replicas = _variable(
        "T2I_RAY_REPLICAS", "1", "engine replicas: a number, or `MIN-MAX` for autoscaling between the bounds")
    ray_replica_cpus: float = _variable(
        "T2I_RAY_REPLICA_CPUS", 1.0, "CPUs each replica reserves; its torch threads are this, rounded down (at least "
        "1)", gt=0)
    ray_replica_gpus: float = _variable(
        "T2I_RAY_REPLICA_GPUS", 0.0, "GPUs each replica reserves (1: one GPU each; 0.5: two replicas share one)",
        ge=0)
    ray_max_ongoing: int = _variable(
        "T2I_RAY_MAX_ONGOING", 2, "requests one replica holds at once (running or waiting for its model)", ge=1)
    ray_max_queued: int = _variable(
        "T2I_RAY_MAX_QUEUED", 32, "requests waiting for a free replica before \"server busy\"", ge=1)

    @model_validator(mode="before")
    @classmethod
    def _read_environment(cls, given: ArgsKwargs) -> ArgsKwargs:
        """The variables fill in what the keyword arguments leave out."""
        kwargs = given.kwargs or {}
        named = {FIELDS[name].alias for name in kwargs if name in FIELDS} | set(kwargs)
        environment = {name: value for name, value in EnvSettingsSource(_Environment)().items() if name not in named}
        return ArgsKwargs(given.args, {**environment, **kwargs})


class _Variables(BaseSettings):
    """What pydantic-settings reads variables for (a BaseSettings model); _Environment adds Settings' names."""

    model_config = SettingsConfigDict(case_sensitive=True)


FIELDS = Settings.__pydantic_fields__
# each variable as a raw string, so that Settings' own validators parse its lists and switches
_Environment = create_model("_Environment", __base__=_Variables,
                            **{name: (str, Field("", alias=field.alias)) for name, field in FIELDS.items()})


def _explain(error: ValidationError) -> str:
    """One line per bad value: the variable, the value given, and what it takes."""
    lines = []
    for problem in error.errors(include_url=False):
        if problem["type"] == "default_factory_not_called":  # a folder under T2I_DATA_DIR, after another error
            continue
        key = str(problem["loc"][0]) if problem["loc"] else "settings"
        variable = FIELDS[key].alias if key in FIELDS else key
        reason = str(problem["msg"]).removeprefix("Value error, ").removeprefix(f"{variable}: ")
        lines.append(f"{variable}={problem['input']!r}: {reason[0].lower()}{reason[1:]}")
    return "\n".join(lines)


_validated_init = Settings.__init__


def _init(self, **values) -> None:
    """Settings' validating constructor, with its errors in the variables' names rather than pydantic's report."""
    try:
        _validated_init(self, **values)
    except ValidationError as error:
        raise SettingsError(_explain(error)) from None


Settings.__init__ = _init


def load_settings() -> Settings:
    """Settings for a program's start: a bad variable prints what is wrong (which variable, what it takes) and
    exits with status 2, as argparse does for a bad flag."""
    try:
        return Settings()
    except SettingsError as error:
        print(f"t2i: bad settings (see the settings table in README.md):\n{error}", file=sys.stderr)
        raise SystemExit(2) from None


def resolve_device(name: str):
    """The torch device for a setting value ('auto' picks CUDA, then MPS, then CPU)."""
    import torch

    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(name: str, device):
    """The torch dtype for a setting value ('auto': float16 on CUDA, float32 elsewhere)."""
    import torch

    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
