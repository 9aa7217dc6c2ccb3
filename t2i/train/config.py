"""Training configuration: one dataclass, validated up front, and the presets a beginner picks from."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from t2i.request import RequestError

METHODS = ("lora", "dreambooth")
PRECISIONS = ("auto", "no", "fp16", "bf16")
# which UNet layers get LoRA weights: "attention" (attention and feed-forward, as diffusers' scripts train), or
# also the resnets' and resamplers' convolutions (kohya's LoCon), the only layers working at every resolution
TARGETS = ("attention", "attention+conv")
# optimizers and learning-rate schedules (diffusers.optimization.get_scheduler's names); t2i/train/optimizers.py
OPTIMIZERS = ("adamw", "adamw8bit", "prodigy")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
# which timesteps training draws more often: "low_noise" favours the small timesteps, where line and texture
# detail is decided; "high_noise" the large ones, where composition is (diffusers' SDXL script: earlier/later)
TIMESTEP_BIASES = ("none", "low_noise", "high_noise")
# the frozen base weights a LoRA trains on (QLoRA-style; t2i/train/quantised_base.py): full precision, torchao int8
# weight-only (CPU and GPU), or bitsandbytes NF4 (CUDA only)
BASE_QUANTIZATIONS = ("none", "int8", "nf4")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TRIGGER = re.compile(r"^[^\s<>:,()\[\]]{2,32}$")  # one word that A1111/compel syntax leaves alone


@dataclass(frozen=True)
class TrainingConfig:
    """Everything one training run needs besides its images; saved as config.json in the run folder."""

    name: str = ""
    trigger: str = ""  # the word that calls the style or subject up; empty: `name` is used
    method: str = "lora"  # "lora": captions per image; "dreambooth": instance prompt with a rare token
    base_model: str = "embedded"
    rank: int = 8
    alpha: float = 8.0
    targets: str = "attention"  # one of TARGETS
    learning_rate: float = 1e-3
    text_encoder_lr: float = 5e-5
    train_text_encoder: bool = False
    steps: int = 300
    batch_size: int = 4
    gradient_accumulation: int = 1
    seed: int = 0
    resolution: int = 0  # 0: the base model's native size
    buckets: bool = True  # aspect-ratio buckets; False: centre crop to a square
    use_captions: bool = True  # per-image captions (.txt) when given; else the instance prompt
    caption_dropout: float = 0.1  # fraction of samples trained with an empty prompt (keeps CFG working)
    instance_prompt: str = ""  # "" -> "a {trigger} {class_word}" for DreamBooth
    class_word: str = "shape"
    # prior preservation: also train on base-model images of the class prompt (DreamBooth) or of the captions
    # without the trigger (a style), so the LoRA changes nothing unless the trigger is in the prompt
    prior_preservation: bool = True
    class_prompt: str = ""  # "" -> "a {class_word}"
    # regularisation prompts (kohya's regularisation set): when given, the class images come from these, in turn,
    # instead of the class prompt or the captions; e.g. a colour style's captions with other colours named
    class_prompts: tuple[str, ...] = ()
    num_class_images: int = 12
    prior_loss_weight: float = 1.0
    checkpoint_every: int = 50
    sample_every: int = 100
    sample_prompts: tuple[str, ...] = ()  # "" -> one prompt with the trigger, one without
    max_bad_losses: int = 5  # stop after this many NaN/Inf losses in a row
    mixed_precision: str = "auto"  # "auto": fp16/bf16 on a GPU, off on CPU
    gradient_checkpointing: bool = True  # used only on a GPU, where memory rather than time is short
    # the model family the LoRA is for ("sd", "sdxl", "flux1"; t2i/train/family_training.py TRAINABLE_FAMILIES), as
    # the Train tab or CLI chose it; "": whatever family the base model is. A base model of another family is refused
    family: str = ""
    # the options kohya and OneTrainer users expect; the defaults train as before they existed
    optimizer: str = "adamw"  # one of OPTIMIZERS; "prodigy" sets its own step size (learning rate ~1.0)
    lr_scheduler: str = "constant"  # one of LR_SCHEDULERS
    lr_warmup_steps: int = 0  # steps of linear ramp from 0 to the learning rate (not with "constant")
    lr_cycles: int = 1  # hard restarts of "cosine_with_restarts"
    min_snr_gamma: float = 0.0  # min-SNR-gamma loss weighting (5 is the paper's value); 0: off
    noise_offset: float = 0.0  # per-channel offset added to the noise (0.05-0.1: darker darks, brighter brights)
    shuffle_tags: bool = False  # shuffle a caption's comma-separated tags each time it is drawn
    keep_tokens: int = 1  # the first tags stay in place when shuffling (the trigger comes first)
    ema_decay: float = 0.0  # exponential moving average of the LoRA weights, exported instead; 0: off
    timestep_bias: str = "none"  # one of TIMESTEP_BIASES
    timestep_bias_multiplier: float = 2.0  # how much more often the favoured timesteps are drawn
    timestep_bias_portion: float = 0.25  # the favoured fraction of the timesteps
    base_quantization: str = "none"  # one of BASE_QUANTIZATIONS: the denoiser's frozen weights, the LoRA stays float

    @property
    def trigger_word(self) -> str:
        return self.trigger or self.name

    @property
    def instance_text(self) -> str:
        return self.instance_prompt or f"a {self.trigger_word} {self.class_word}"

    @property
    def class_text(self) -> str:
        return self.class_prompt or f"a {self.class_word}"

    def validate(self) -> None:
        """Raise RequestError for the first invalid value; nothing is corrected silently."""
        if not NAME.match(self.name):
            raise RequestError(f"name must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or "
                               f"digit; got {self.name!r}")
        if not TRIGGER.match(self.trigger_word):
            raise RequestError(f"trigger must be one word of 2-32 characters without spaces or <>:,()[]; "
                               f"got {self.trigger_word!r}")
        if self.method not in METHODS:
            raise RequestError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.targets not in TARGETS:
            raise RequestError(f"targets must be one of {', '.join(TARGETS)}; got {self.targets!r}")
        if self.mixed_precision not in PRECISIONS:
            raise RequestError(f"mixed_precision must be one of {', '.join(PRECISIONS)}; got {self.mixed_precision!r}")
        ranges = {"rank": (1, 256), "steps": (1, 100_000), "batch_size": (1, 256), "gradient_accumulation": (1, 256),
                  "checkpoint_every": (1, 100_000), "sample_every": (0, 100_000), "num_class_images": (0, 1000),
                  "max_bad_losses": (1, 1000), "resolution": (0, 2048), "seed": (0, 2**32 - 1)}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise RequestError(f"{name} must be a whole number from {low} to {high}; got {value!r}")
        for name, low, high in (("alpha", 1e-3, 1024), ("learning_rate", 1e-7, 1.0), ("text_encoder_lr", 0.0, 1.0),
                                ("caption_dropout", 0.0, 0.9), ("prior_loss_weight", 0.0, 10.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
                raise RequestError(f"{name} must be a number from {low} to {high}; got {value!r}")
        if self.resolution and self.resolution % 8:
            raise RequestError(f"resolution must be a multiple of 8; got {self.resolution}")
        if not isinstance(self.class_prompts, tuple) or not all(
                isinstance(p, str) and 0 < len(p.strip()) <= 500 for p in self.class_prompts):
            raise RequestError("class prompts must be non-empty texts of at most 500 characters")
        with_trigger = [p for p in self.class_prompts if self.trigger_word in p.replace(",", " ").split()]
        if with_trigger:
            raise RequestError(f"class prompts must not name the trigger {self.trigger_word!r} (they keep the base "
                               f"model's answer without it); got {with_trigger[0]!r}")
        if self.prior_preservation and self.num_class_images < 1:
            raise RequestError("prior preservation needs at least 1 class image")
        self._validate_options()

    def _validate_options(self) -> None:
        """The family, optimizer, schedule and loss options."""
        from t2i.train.family_training import TRAINABLE_FAMILIES  # torch and diffusers: only when validating

        if self.family and self.family not in TRAINABLE_FAMILIES:
            raise RequestError(f"family must be empty (the base model's) or one of {', '.join(TRAINABLE_FAMILIES)}; "
                               f"got {self.family!r}")
        for name, choices in (("optimizer", OPTIMIZERS), ("lr_scheduler", LR_SCHEDULERS),
                              ("timestep_bias", TIMESTEP_BIASES), ("base_quantization", BASE_QUANTIZATIONS)):
            if getattr(self, name) not in choices:
                raise RequestError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        for name, (low, high) in {"lr_warmup_steps": (0, 100_000), "lr_cycles": (1, 100),
                                  "keep_tokens": (0, 32)}.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise RequestError(f"{name} must be a whole number from {low} to {high}; got {value!r}")
        for name, low, high in (("min_snr_gamma", 0.0, 100.0), ("noise_offset", 0.0, 1.0), ("ema_decay", 0.0, 0.99999),
                                ("timestep_bias_multiplier", 0.1, 100.0), ("timestep_bias_portion", 0.01, 1.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
                raise RequestError(f"{name} must be a number from {low} to {high}; got {value!r}")
        if self.lr_warmup_steps and self.lr_scheduler == "constant":
            raise RequestError("the 'constant' schedule has no warmup; choose 'constant_with_warmup' or set the "
                               "warmup steps to 0")
        if self.lr_warmup_steps >= self.steps:
            raise RequestError(f"lr_warmup_steps ({self.lr_warmup_steps}) must be fewer than the steps ({self.steps})")
        if self.ema_decay and self.ema_decay < 0.5:
            raise RequestError(f"ema_decay must be 0 (off) or from 0.5 to 0.99999; got {self.ema_decay!r}")
        if self.optimizer == "prodigy":  # its learning rate multiplies the step size it estimates
            rates = [("learning_rate", self.learning_rate)]
            if self.train_text_encoder:
                rates.append(("text_encoder_lr", self.text_encoder_lr))
            for name, value in rates:
                if not 0.1 <= value <= 1.0:
                    raise RequestError(f"Prodigy finds its own step size: set {name} to about 1.0 (0.1 to 1.0); "
                                       f"got {value!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "TrainingConfig":
        """Read a config written by to_json; unknown keys are an error (a config from another version)."""
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RequestError(f"unknown training setting {unknown[0]!r}")
        for key in ("sample_prompts", "class_prompts"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> "TrainingConfig":
        return cls.from_json(Path(path).read_text())


# A beginner picks images and a name; these fill in the rest. Tuned on the embedded model (bench/train_style.py).
# A rare trigger token only gets a meaning of its own if the text encoder learns too (measured: with a frozen
# text encoder the LoRA changed images equally with and without the trigger, or not at all with prior images).
# "quick style" trains the convolutions too (targets "attention+conv") with the UNet at 1e-3: the embedded UNet's
# 16x16 latent level (DownBlock2D, UpBlock2D) has no attention, so an attention LoRA cannot draw a pattern two latent
# px wide there. 8 px stripes (12 images, 10 prompts, bench/results/train_style_striped_*.json and
# texture_diagnosis_*.json): attention at 5e-4 20% with the trigger, attention+conv at 5e-4 40%, at 1e-3 80% (0%
# without); a full UNet fine-tune 90%, a conv LoRA without prior images 90% (70% without). The subject preset
# stays "attention" (the convolutions did not lift the held-out "outlined" style, 5-15%, and cost ~15% more time).
# "quick style" trained the UNet at a quarter of the rate (now half) and weights the prior 3x: on the colour "teal"
# (40 prompts, previous embedded model) that cut the colour leaking into prompts without the trigger from 30% to
# 10%, keeping 100% with it. On the current model it also trains the text encoder at 5e-4, not 2e-3: teal's leak
# 30% -> 22%, and prompts without the trigger keep their own colour 88% of the time, not 35% (maroon: 85%, not 52%).
# "subject" makes 36 class images, not 12: on the current embedded model the diamond leaked into "a shape" in 40%
# of images with 12 (prior weight 3: 15%, but only 60% with the token); with 36, 10% and 100% with the token.
# With attention only, no knob got texture styles past 50% (low-noise timestep bias, rank 64, 800 steps, UNet up to
# 5e-3, prior weight 1). Patterns finer than the VAE carries are flagged before training by t2i/train/style_check.py.
# Other 8 px textures under "quick style": dots 50%, checkers 10%, outlines 35% (0% without the trigger); a full UNet
# fine-tune on the same images and steps draws them in only 60%, 0%, 75% (texture_diagnosis_full_*.json), so checkers
# are flagged too. On 20 prompts dots reach 40%, and 30-50% under the changes tried (UNet 2e-3, 600 steps, prior
# weight 1 or 0.5, min-SNR-gamma 5: 50%, 1: 30%), 10% with a low-noise timestep bias x3 (train_style_dotted_*.json),
# so the preset is unchanged and Check images says what to expect (style_check.TRAINED_SHARES). Outlines (35%) reached
# 85% / 0% with min-SNR-gamma 5 + prior weight 0.5 + rank 32 / alpha 32 in one run, 55% trained again with seed 1
# (min-SNR 5 alone 55%, prior 0.5 + rank 32 65%; train_style_outlined_*.json); under that combination stripes read
# 75% / 0% (20 prompts) and teal leaks: 30% without the trigger, own colour kept 50% (train_style_teal_minsnr5_prior0.5_rank32.json), so it is no
# preset (bench/texture_runs_table.py lists every run).
_BASE = TrainingConfig(rank=16, alpha=16.0, learning_rate=2e-3, train_text_encoder=True, text_encoder_lr=2e-3,
                       steps=400)
PRESETS: dict[str, TrainingConfig] = {
    "quick style": replace(_BASE, learning_rate=1e-3, text_encoder_lr=5e-4, prior_loss_weight=3.0,
                           targets="attention+conv"),
    "subject": replace(_BASE, method="dreambooth", use_captions=False, caption_dropout=0.0, num_class_images=36),
}
DEFAULT_PRESET = "quick style"


# What a preset changes for a family that trains differently. Flux.1 draws its noise levels by flow matching
# (t2i/train/family_flux.py refuses the DDPM-only options), and trains its transformer only unless CLIP-L is asked
# for (off, as in diffusers' and kohya's Flux scripts: T5 carries the prompt); the rates and steps stay the preset's.
FAMILY_PRESET_CHANGES: dict[str, dict] = {
    "flux1": {"train_text_encoder": False, "min_snr_gamma": 0.0, "timestep_bias": "none"},
}


def preset_config(preset: str, family: str = "") -> TrainingConfig:
    """The preset as it trains `family` ("": the base model's, with the SD/SDXL values); a KeyError if unknown."""
    return replace(PRESETS[preset], **FAMILY_PRESET_CHANGES.get(family, {}))


def form_overrides(values: dict, filled_from: str, preset: str, family: str = "") -> dict:
    """A form's field values (a front end that fills its boxes from a preset) as overrides of `preset`: a value
    still equal to what `filled_from` (the preset the boxes were filled from) has is left to `preset` when that is
    another one, e.g. an API call that names a preset but not the boxes. An empty (None) value is an error."""
    source = preset_config(filled_from, family) if filled_from in PRESETS else None
    overrides = {}
    for name, value in values.items():
        if value is None:
            raise RequestError(f"{name} needs a value")
        if filled_from != preset and source is not None and value == getattr(source, name):
            continue
        overrides[name] = value
    return overrides


def config_from_preset(preset: str = DEFAULT_PRESET, **overrides) -> TrainingConfig:
    """A preset (as it trains the `family` override, if given) with some fields changed, validated; an unknown
    preset or field is a RequestError."""
    if preset not in PRESETS:
        raise RequestError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    known = {f.name for f in fields(TrainingConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise RequestError(f"unknown training setting {unknown[0]!r}")
    config = replace(preset_config(preset, overrides.get("family", "")), **overrides)
    config.validate()
    return config
