"""Settings: every knob is an environment variable, with its default here and nowhere else."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

EMBEDDED_MODEL_DIR = Path(__file__).resolve().parent / "embedded" / "model"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    device: str = field(default_factory=lambda: _env("T2I_DEVICE", "auto"))  # auto | cpu | cuda | cuda:N | mps
    dtype: str = field(default_factory=lambda: _env("T2I_DTYPE", "auto"))  # auto | float32 | float16 | bfloat16
    default_model: str = field(default_factory=lambda: _env("T2I_MODEL", "embedded"))
    # models a web request may name by folder or file name (diffusers folders and .safetensors checkpoints)
    model_dir: Path = field(default_factory=lambda: Path(_env("T2I_MODEL_DIR", os.path.join(
        _env("T2I_DATA_DIR", os.path.join(tempfile.gettempdir(), "t2i")), "models"))))
    # web requests may name any local model path (a single-user laptop; a shared server should not)
    model_local_paths: bool = field(default_factory=lambda: _env("T2I_MODEL_LOCAL_PATHS", "0") == "1")
    model_cache_size: int = field(default_factory=lambda: int(_env("T2I_MODEL_CACHE_SIZE", "2")))
    # bytes (GiB) the cached models' weights may hold on their device; 0: only the count above bounds the cache
    model_cache_gb: float = field(default_factory=lambda: float(_env("T2I_MODEL_CACHE_GB", "0")))
    # single-file checkpoints: a local diffusers folder whose configs they load with ("": the local hub cache)
    single_file_config: str = field(default_factory=lambda: _env("T2I_SINGLE_FILE_CONFIG", ""))
    max_prompt_chars: int = field(default_factory=lambda: int(_env("T2I_MAX_PROMPT_CHARS", "4000")))
    max_side: int = field(default_factory=lambda: int(_env("T2I_MAX_SIDE", "2048")))
    max_pixels: int = field(default_factory=lambda: int(_env("T2I_MAX_PIXELS", str(1536 * 1536))))
    max_steps: int = field(default_factory=lambda: int(_env("T2I_MAX_STEPS", "150")))
    max_images: int = field(default_factory=lambda: int(_env("T2I_MAX_IMAGES", "16")))  # batch count x size
    max_upload_mb: int = field(default_factory=lambda: int(_env("T2I_MAX_UPLOAD_MB", "20")))
    queue_size: int = field(default_factory=lambda: int(_env("T2I_QUEUE_SIZE", "32")))
    host: str = field(default_factory=lambda: _env("T2I_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(_env("T2I_PORT", "7860")))
    share: bool = field(default_factory=lambda: _env("T2I_SHARE", "0") == "1")
    # uploads and results live outside the app folder, one sub-folder per session
    data_dir: Path = field(default_factory=lambda: Path(_env("T2I_DATA_DIR", os.path.join(tempfile.gettempdir(), "t2i"))))
    # encrypts what the page keeps in the browser (the training runs it started); "": one made at first start and
    # kept in data_dir/browser-secret, so the list survives a restart
    browser_secret: str = field(default_factory=lambda: _env("T2I_BROWSER_SECRET", ""))
    # uploads (in data_dir/uploads) go when their browser session ends; this sweep removes, every few minutes,
    # cached files older than this many seconds that no session refreshed (tabs that never said goodbye); 0: off
    upload_ttl_s: int = field(default_factory=lambda: int(_env("T2I_UPLOAD_TTL_S", "3600")))
    styles_dirs: tuple[Path, ...] = field(default_factory=lambda: tuple(
        Path(p) for p in _env("T2I_STYLES_DIRS", "").split(os.pathsep) if p))
    styles_max_kb: int = field(default_factory=lambda: int(_env("T2I_STYLES_MAX_KB", "1024")))  # a style file upload
    preview_every: int = field(default_factory=lambda: int(_env("T2I_PREVIEW_EVERY", "2")))  # steps between previews
    # live previews: full (the model's VAE), approx (a linear latent->RGB map), auto (full for small VAEs)
    preview_method: str = field(default_factory=lambda: _env("T2I_PREVIEW_METHOD", "auto"))
    # plugins: extra folders, whether installed (entry-point) plugins load, and names to switch off
    plugin_dirs: tuple[Path, ...] = field(default_factory=lambda: tuple(
        Path(p) for p in _env("T2I_PLUGIN_DIRS", "").split(os.pathsep) if p))
    entry_point_plugins: bool = field(default_factory=lambda: _env("T2I_ENTRY_POINT_PLUGINS", "1") == "1")
    disabled_plugins: tuple[str, ...] = field(default_factory=lambda: tuple(
        n.strip() for n in _env("T2I_DISABLED_PLUGINS", "").split(",") if n.strip()))
    # generate requests per minute per client address (bursts up to the same number); 0 turns the limit off
    rate_limit_per_minute: float = field(default_factory=lambda: float(_env("T2I_RATE_LIMIT", "60")))
    # LoRA library: .safetensors files (uploads and the trainer's outputs land here), scanned on refresh
    lora_dir: Path = field(default_factory=lambda: Path(_env("T2I_LORA_DIR", os.path.join(
        _env("T2I_DATA_DIR", os.path.join(tempfile.gettempdir(), "t2i")), "loras"))))
    lora_cache_size: int = field(default_factory=lambda: int(_env("T2I_LORA_CACHE_SIZE", "8")))  # adapters kept loaded per model
    lora_max_mb: int = field(default_factory=lambda: int(_env("T2I_LORA_MAX_MB", "1024")))  # LoRA file size cap
    # LoRAs named by local file path, not only from the library (the CLI turns this on; a shared server should not)
    lora_local_paths: bool = field(default_factory=lambda: _env("T2I_LORA_LOCAL_PATHS", "0") == "1")
    # trainer: CPU threads of a training process (0: half the cores, leaving the rest to generation)
    train_threads: int = field(default_factory=lambda: int(_env("T2I_TRAIN_THREADS", "0")))
    # seconds the trainer's "push to the Hub" waits for huggingface.co to answer before giving up
    hub_timeout_s: float = field(default_factory=lambda: float(_env("T2I_HUB_TIMEOUT", "20")))
    # ControlNet: library folders of diffusers ControlNet folders, and where weighted preprocessors (HED,
    # MiDaS, OpenPose, ...) load their weights from: a folder holding the files, or a hub id
    controlnet_dirs: tuple[Path, ...] = field(default_factory=lambda: tuple(
        Path(p) for p in _env("T2I_CONTROLNET_DIRS", "").split(os.pathsep) if p))
    annotators: str = field(default_factory=lambda: _env("T2I_ANNOTATORS", "lllyasviel/Annotators"))
    # safety: what happens to a flagged image ("block", "blur" or "black"); clients cannot change it
    safety_action: str = field(default_factory=lambda: _env("T2I_SAFETY_ACTION", "block"))
    # an optional JSON policy file (thresholds per checker, and any of the safety settings below); see README
    safety_config: str = field(default_factory=lambda: _env("T2I_SAFETY_CONFIG", ""))
    safety_checkers: tuple[str, ...] = field(default_factory=lambda: tuple(  # "": every loaded checker runs
        n.strip() for n in _env("T2I_SAFETY_CHECKERS", "").split(",") if n.strip()))
    safety_timeout_s: float = field(default_factory=lambda: float(_env("T2I_SAFETY_TIMEOUT", "10")))
    safety_audit_log: str = field(default_factory=lambda: _env("T2I_SAFETY_AUDIT_LOG", ""))  # "": data_dir/
    # fail closed: with no image checker loaded no image is served, unless the operator allows it here
    safety_allow_unchecked_images: bool = field(default_factory=lambda: _env("T2I_SAFETY_ALLOW_UNCHECKED", "0") == "1")
    # diffusers' StableDiffusionSafetyChecker: a local folder or a hub id found in the local hub cache ("": off)
    safety_sd_checker: str = field(default_factory=lambda: _env("T2I_SD_SAFETY_CHECKER",
                                                                "CompVis/stable-diffusion-safety-checker"))
    # labelling: an invisible watermark on outputs (1 = on); C2PA manifests signed with a PEM key + cert chain
    watermark: bool = field(default_factory=lambda: _env("T2I_WATERMARK", "0") == "1")
    c2pa_key: str = field(default_factory=lambda: _env("T2I_C2PA_KEY", ""))
    c2pa_cert: str = field(default_factory=lambda: _env("T2I_C2PA_CERT", ""))
    # speed switches (t2i/fastpath.py): auto | quality | fast | a comma list such as channels_last,low_precision,cache=2
    speed: str = field(default_factory=lambda: _env("T2I_SPEED", "auto"))
    # batching of compatible queued requests into one pipeline call (t2i/batching.py): images per call (1 = off,
    # the default: a batched image may differ from the same request run alone by a level in a few pixels), and
    # how long a request waits for companions before it runs
    batch_max: int = field(default_factory=lambda: int(_env("T2I_BATCH_MAX", "1")))
    batch_window_ms: float = field(default_factory=lambda: float(_env("T2I_BATCH_WINDOW_MS", "30")))


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
