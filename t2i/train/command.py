"""`python -m t2i train`: check a folder of images (or resume a run), train a LoRA in a child process, print its
path last, and optionally push it to the Hugging Face Hub."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from t2i.train.config import (BASE_QUANTIZATIONS, DEFAULT_PRESET, LR_SCHEDULERS, METHODS, OPTIMIZERS, PRESETS,
                              TARGETS, TIMESTEP_BIASES)


def add_train_parser(sub) -> None:
    """The `train` subcommand of the t2i command line."""
    train = sub.add_parser("train", help="train a LoRA (style) or DreamBooth-LoRA (subject) on a folder of images")
    train.add_argument("--images", type=Path, help="folder (or .zip) of images, with optional same-name .txt captions and "
                                                        ".mask.png loss masks (white: trained, black: ignored)")
    train.add_argument("--name", help="name of the LoRA file in the library")
    train.add_argument("--trigger", default="", help="word that calls the LoRA up (default: the name)")
    train.add_argument("--method", choices=METHODS, default=None, help="default: the preset's")
    train.add_argument("--preset", default=DEFAULT_PRESET, help="one of: " + ", ".join(PRESETS))
    train.add_argument("--steps", type=int, default=None)
    train.add_argument("--rank", type=int, default=None, help="LoRA rank (kohya's network_dim)")
    train.add_argument("--alpha", type=float, default=None,
                       help="LoRA alpha (kohya's network_alpha; the LoRA is scaled by alpha / rank)")
    train.add_argument("--prior-loss-weight", type=float, default=None,
                       help="weight of the class images' loss in prior preservation")
    train.add_argument("--targets", choices=TARGETS, default=None,
                       help="UNet layers the LoRA adapts (default: the preset's); 'attention+conv' also the convolutions")
    train.add_argument("--learning-rate", type=float, default=None)
    train.add_argument("--text-encoder-lr", type=float, default=None, help="the text encoder's learning rate")
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--class-word", default=None, help="DreamBooth class, e.g. 'shape' or 'dog'")
    train.add_argument("--text-encoder", action="store_true", default=None, help="train the text encoder too")
    train.add_argument("--no-prior", action="store_true", help="skip prior preservation (class images)")
    train.add_argument("--class-prompt", action="append", default=[], dest="class_prompts", metavar="TEXT",
                       help="a regularisation prompt for the class images (repeat it for several); default: the "
                            "captions without the trigger (a style) or 'a CLASS_WORD' (DreamBooth)")
    _add_option_flags(train)
    train.add_argument("--checkpoint-every", type=int, default=None)
    train.add_argument("--sample-every", type=int, default=None)
    train.add_argument("--base-model", default=None, help="'embedded', a diffusers folder or a hub id")
    train.add_argument("--family", default=None,
                       help="the model family the LoRA is for: sd, sdxl or flux1 (default: the base model's); a base "
                            "model of another family is refused")
    train.add_argument("--resume", default="", metavar="RUN_ID",
                       help="continue an interrupted, cancelled or crashed run from its newest checkpoint")
    train.add_argument("--push-to-hub", default="", metavar="REPO_ID",
                       help="upload the finished LoRA to this Hugging Face model repo (token: HF_TOKEN or `hf auth "
                            "login`); with --resume of a finished run, only upload")
    train.add_argument("--private", action="store_true", help="create the Hub repo as private")
    train.add_argument("--processes", type=int, default=None, metavar="N",
                       help="training processes (default: T2I_TRAIN_PROCESSES): one per GPU, or N on CPU (gloo); "
                            "a resumed run needs the number it was checkpointed with")
    train.set_defaults(run=_train)


# the options kohya and OneTrainer users know; each flag is the TrainingConfig field of the same name
OPTION_FLAGS = ("optimizer", "lr_scheduler", "lr_warmup_steps", "lr_cycles", "min_snr_gamma", "noise_offset",
                "shuffle_tags", "keep_tokens", "ema_decay", "timestep_bias", "timestep_bias_multiplier",
                "timestep_bias_portion", "base_quantization")


def _add_option_flags(train) -> None:
    """Optimizer, schedule and loss flags (default: the preset's)."""
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                       help="adamw8bit: bitsandbytes' 8-bit AdamW (CUDA GPUs and CPUs); prodigy: finds its own step "
                            "size, use --learning-rate 1.0")
    train.add_argument("--lr-scheduler", choices=LR_SCHEDULERS, default=None)
    train.add_argument("--lr-warmup-steps", type=int, default=None, help="linear ramp from 0 to the learning rate")
    train.add_argument("--lr-cycles", type=int, default=None, help="restarts of cosine_with_restarts")
    train.add_argument("--min-snr-gamma", type=float, default=None, help="min-SNR-gamma loss weighting, e.g. 5; 0: off")
    train.add_argument("--noise-offset", type=float, default=None, help="e.g. 0.05: darker darks, brighter brights")
    train.add_argument("--shuffle-tags", action="store_true", default=None,
                       help="shuffle each caption's comma-separated tags when it is drawn")
    train.add_argument("--keep-tokens", type=int, default=None, help="leading tags that stay in place when shuffling")
    train.add_argument("--ema-decay", type=float, default=None,
                       help="export an exponential moving average of the LoRA weights, e.g. 0.999; 0: off")
    train.add_argument("--timestep-bias", choices=TIMESTEP_BIASES, default=None,
                       help="draw low-noise (detail, texture) or high-noise (composition) timesteps more often")
    train.add_argument("--timestep-bias-multiplier", type=float, default=None,
                       help="how much more often the favoured timesteps are drawn (default 2)")
    train.add_argument("--timestep-bias-portion", type=float, default=None,
                       help="the favoured fraction of the timesteps (default 0.25)")
    train.add_argument("--base-quantization", choices=BASE_QUANTIZATIONS, default=None,
                       help="train on a quantised base (QLoRA-style; the LoRA stays full precision): int8 (torchao, "
                            "CPU and GPU) or nf4 (bitsandbytes, CUDA only); default none")


def _overrides(args) -> dict:
    names = {"trigger": "trigger", "method": "method", "steps": "steps", "rank": "rank", "alpha": "alpha",
             "prior_loss_weight": "prior_loss_weight", "targets": "targets",
             "learning_rate": "learning_rate", "batch_size": "batch_size", "seed": "seed", "class_word": "class_word",
             "text_encoder": "train_text_encoder", "checkpoint_every": "checkpoint_every",
             "sample_every": "sample_every", "base_model": "base_model", "text_encoder_lr": "text_encoder_lr",
             "family": "family", **{name: name for name in OPTION_FLAGS}}
    values = {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) not in (None, "")}
    if args.method == "dreambooth" and args.preset == DEFAULT_PRESET:
        values["use_captions"] = False  # DreamBooth trains on the instance prompt
    if args.no_prior:
        values["prior_preservation"] = False
    if args.class_prompts:
        values["class_prompts"] = tuple(args.class_prompts)
    return values


def dataset_notes(dataset, config, settings=None) -> list[str]:
    """What the Train tab's "Check images" says about a checked dataset: its notes, and whether its fine detail
    survives the base model's VAE at the training size (t2i/train/check_vae.py; `settings`: the environment's when
    None)."""
    from t2i.settings import Settings
    from t2i.train.check_vae import detail_notes

    return list(dataset.notes) + detail_notes([item.image for item in dataset.items], config.base_model,
                                              settings or Settings(), config.resolution)


def _train(args) -> int:
    from t2i.plugins import PluginManager
    from t2i.request import RequestError
    from t2i.safety.gate import SafetyGate
    from t2i.settings import Settings

    from t2i.train.config import config_from_preset
    from t2i.train.dataset import prepare_dataset
    from t2i.train.runner import TrainingRunner

    settings = Settings()
    if args.processes is not None:
        settings = dataclasses.replace(settings, train_processes=args.processes)  # validated again (at least 1)
    runner = TrainingRunner(settings)
    if args.push_to_hub:  # a bad repo id or a missing token fails now, not after the training
        from t2i.train.hub import check_repo_id, find_token

        check_repo_id(args.push_to_hub)
        find_token()
    if args.resume:
        run_id = args.resume
        if not (args.push_to_hub and runner.status(run_id).state == "done"):
            runner.resume(run_id)
    else:
        if not args.images or not args.name:
            raise RequestError("--images and --name are required (or --resume RUN_ID)")
        config = config_from_preset(args.preset, name=args.name, **_overrides(args))
        safety = SafetyGate(PluginManager.discover(settings), settings)
        dataset = prepare_dataset([args.images], safety=safety)
        for note in dataset_notes(dataset, config, settings):
            print(f"note: {note}", file=sys.stderr)
        run_id = runner.create_run(dataset, config)
        runner.submit(run_id)
    print(f"run {run_id} in {runner.folder(run_id)}", file=sys.stderr)
    status = _follow(runner, run_id)
    if status.state != "done":
        resume = f"; continue {status.resume_point} with --resume {run_id}" if status.resumable else ""
        raise RequestError(f"training {status.state}: {status.message}{resume}")
    print(status.lora, flush=True)
    if args.push_to_hub:
        from t2i.train.hub import push_run

        try:
            url = push_run(runner, run_id, args.push_to_hub, private=args.private)
        except RequestError as exc:
            raise RequestError(f"{exc}; push again with --resume {run_id} --push-to-hub {args.push_to_hub}") from exc
        print(f"pushed to {url}", file=sys.stderr)
    return 0


def _follow(runner, run_id: str):
    """Print the run's steps, losses and messages on stderr until it has finished; its final status."""
    shown_step, shown_message = -1, ""
    while True:
        status = runner.status(run_id)
        if status.step != shown_step and status.steps:
            loss = f" loss {status.losses[-1][1]:.4f}" if status.losses else ""
            print(f"step {status.step}/{status.steps}{loss}", file=sys.stderr)
            shown_step = status.step
        if status.message and status.message != shown_message and not status.finished:
            print(status.message, file=sys.stderr)
            shown_message = status.message
        if status.finished and not runner.is_active(run_id):
            # a short run can finish between two looks; its final message says where it resumed from
            if status.state == "done" and status.message != shown_message:
                print(status.message, file=sys.stderr)
            return status
        time.sleep(1.0)
