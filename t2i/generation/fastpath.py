"""The fast path: speed switches applied to a loaded pipeline, chosen by `T2I_SPEED`.

Switches (each measured in bench/ and checked against the slow path in tests/test_fastpath.py):
- `channels_last`: UNet and VAE weights in NHWC, the layout oneDNN and cuDNN convolutions prefer.
- `low_precision`: the UNet in bfloat16 on CPUs with avx512_bf16 (float16 on CUDA, where the whole pipeline
  already runs in float16). Only the denoiser is cast: the text encoder, the VAE and the sampler's latents stay
  float32, and a hook casts the UNet's inputs down and its output back up.
- `cache=N`: DeepCache-style feature caching: the UNet's deep blocks (all but the outermost down and up block)
  run every N-th step; the steps between reuse their outputs and only run the high-resolution shell.
The switches act on UNets (SD, SDXL). On transformer families (SD3, Flux, Z-Image, Qwen-Image, Chroma) they are
skipped and the plan says why (`FastPath.skipped`, logged at load): channels-last is a convolution layout, the
cast hook would round the float position ids those transformers take, and the feature cache hooks UNet blocks.
SDPA attention needs no switch: diffusers uses `AttnProcessor2_0` (torch's scaled_dot_product_attention) by
default whenever torch has it.

`T2I_SPEED` is `auto` (the default: `fast` for SD-size UNets, `quality` for small ones such as the embedded
model, where the fast path measured no gain), `quality` (no switch), `fast` (channels-last and low precision
where this device computes it natively) or a comma list of switches such as `channels_last,low_precision,cache=2`. `fast` leaves the feature
cache off: on the embedded model's fidelity benchmark caching every 2nd step cost 6 points of colour accuracy,
while channels-last + bf16 stayed within 1.25 points on every attribute (BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache

import torch
from diffusers.hooks import HookRegistry, ModelHook

from t2i.settings import parse_speed

_CAST_HOOK = "t2i_low_precision"
_CACHE_HOOK = "t2i_feature_cache"
AUTO_FAST_MIN_PARAMETERS = 100_000_000  # SD 1.5's UNet (0.86B) steps 2.4x faster; the embedded one (5M) gains 0
_UNCAST = ("timestep", "time_ids")  # integers in float tensors: bfloat16 would round 999 to 1000


@dataclass(frozen=True)
class FastPath:
    """Which speed switches a model runs with; the default is the plain (quality) path."""

    channels_last: bool = False
    unet_dtype: torch.dtype | None = None  # None: the UNet keeps the pipeline's dtype
    cache_interval: int = 1  # deep UNet blocks recomputed every N steps; 1 recomputes them every step
    skipped: str = ""  # why asked-for switches were not applied ("" when none were skipped)


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (avx512_bf16 or AMX), where bf16 beats float32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = info.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _low_precision_dtype(device: torch.device) -> torch.dtype | None:
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return None  # no native reduced precision here: float32 is faster than emulated bf16


def plan_for(speed: str, device: torch.device, unet_parameters: int = 0, denoiser: str = "unet") -> FastPath:
    """The switches a `T2I_SPEED` value turns on for `device` and a denoiser of that kind ("unet" or
    "transformer") and size; unknown values raise."""
    choice = parse_speed(speed)  # the grammar lives with the setting, so that Settings checks it at start
    if choice == "auto":
        choice = "fast" if unet_parameters >= AUTO_FAST_MIN_PARAMETERS else "quality"
    if choice == "quality":
        return FastPath()
    if denoiser != "unet":
        return FastPath(skipped=f"T2I_SPEED={speed}: the fast-path switches act on UNets; this model's denoiser "
                                "is a transformer, so it runs the plain path")
    if choice == "fast":
        return FastPath(channels_last=True, unet_dtype=_low_precision_dtype(device))
    return FastPath(channels_last="channels_last" in choice,
                    unet_dtype=_low_precision_dtype(device) if "low_precision" in choice else None,
                    cache_interval=choice.get("cache", 1))


def apply_fast_path(pipe, plan: FastPath) -> None:
    """Apply the load-time switches (memory layout, UNet precision) to a pipeline, in place."""
    if plan.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if plan.unet_dtype is not None and plan.unet_dtype != pipe.unet.dtype:
        pipe.unet.to(plan.unet_dtype)
        HookRegistry.check_if_exists_or_initialize(pipe.unet).register_hook(_CastHook(plan.unet_dtype), _CAST_HOOK)


def _cast(value, dtype: torch.dtype):
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: v if k in _UNCAST else _cast(v, dtype) for k, v in value.items()}
    return value


class _CastHook(ModelHook):
    """Runs a reduced-precision UNet inside a float32 pipeline: inputs cast down, the noise prediction back up."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        self.output_dtype = torch.float32

    def pre_forward(self, module, *args, **kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.output_dtype = sample.dtype
        args = (_cast(args[0], self.dtype), *args[1:]) if args else args
        return args, _cast(kwargs, self.dtype)

    def post_forward(self, module, output):
        if isinstance(output, tuple):
            return (output[0].to(self.output_dtype), *output[1:])
        output.sample = output.sample.to(self.output_dtype)
        return output


@dataclass
class _CacheState:
    interval: int
    calls: int = 0  # UNet calls so far in this run; one per sampling step (CFG runs in one batch)

    @property
    def full_step(self) -> bool:
        return self.calls % self.interval == 0


class _StepCounter(ModelHook):
    """On the UNet itself: counts its calls, so the block hooks know whether this step recomputes."""

    def __init__(self, state: _CacheState):
        super().__init__()
        self.state = state

    def post_forward(self, module, output):
        self.state.calls += 1
        return output


class _BlockCache(ModelHook):
    """On a deep block: runs it on full steps and keeps its output; returns that output on the steps between."""

    def __init__(self, state: _CacheState):
        super().__init__()
        self.state = state
        self.output = None

    def new_forward(self, module, *args, **kwargs):
        if self.output is None or self.state.full_step:
            self.output = self.fn_ref.original_forward(*args, **kwargs)
        return self.output


@contextlib.contextmanager
def feature_cache(unet, interval: int):
    """DeepCache-style caching of the UNet's deep blocks for one sampling run (a no-op for interval 1)."""
    if interval <= 1:
        yield
        return
    state = _CacheState(interval)
    deep_blocks = [*unet.down_blocks[1:], unet.mid_block, *unet.up_blocks[:-1]]
    registries = [HookRegistry.check_if_exists_or_initialize(block) for block in deep_blocks]
    for registry in registries:
        registry.register_hook(_BlockCache(state), _CACHE_HOOK)
    top = HookRegistry.check_if_exists_or_initialize(unet)
    top.register_hook(_StepCounter(state), _CACHE_HOOK)
    try:
        yield
    finally:  # cached features belong to this run only: the next request starts from a full step
        top.remove_hook(_CACHE_HOOK, recurse=False)
        for registry in registries:
            registry.remove_hook(_CACHE_HOOK, recurse=False)
