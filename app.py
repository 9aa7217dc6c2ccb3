"""t2i studio: `python app.py [--port N] [--host ADDR] [--model SPEC] [--share]` (also a Hugging Face Space)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from starlette.middleware import Middleware  # noqa: E402
from starlette.middleware.trustedhost import TrustedHostMiddleware  # noqa: E402

from t2i.web.sessions import upload_folder  # noqa: E402
from t2i.settings import Settings, load_settings  # noqa: E402

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
APP_DIR = Path(__file__).resolve().parent


def zero_gpu():
    """spaces.GPU on Hugging Face ZeroGPU hardware; elsewhere the work runs as it is."""
    try:
        import spaces
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=120)


def served_folders(settings: Settings) -> list[str]:
    """The data folders whose files the pages show (outputs, training uploads and samples); Gradio's file
    route serves these, so the rest of the data folder (safety audit log, LoRA library) stays private."""
    return [str(settings.data_dir / name) for name in ("sessions", "training-uploads", "training")]


def place_uploads(settings: Settings) -> None:
    """Point Gradio's upload cache (GRADIO_TEMP_DIR, read as gradio loads) at the data folder's uploads/,
    refusing a data folder inside the app folder: user files never land beside the code."""
    folder = upload_folder(settings.data_dir).resolve()
    if folder.is_relative_to(APP_DIR):
        raise SystemExit(f"T2I_DATA_DIR is inside the app folder {APP_DIR}; choose a folder outside it")
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)


def app_options(settings: Settings) -> dict:
    """FastAPI options. A loopback-only server accepts only loopback Host names: a DNS-rebinding page names its
    own domain, is same-origin to itself, and CORS never stops it."""
    if settings.host not in LOOPBACK_HOSTS or settings.share:  # a share tunnel forwards its own host name
        return {}
    return {"middleware": [Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_HOSTS))]}


def main() -> None:
    settings = load_settings()  # a bad T2I_* variable stops the app here, before the model stack is imported
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=settings.port, help="env T2I_PORT")
    parser.add_argument("--host", default=settings.host, help="env T2I_HOST")
    parser.add_argument("--model", default=settings.default_model, help="default model (env T2I_MODEL)")
    parser.add_argument("--share", action="store_true", default=settings.share, help="Gradio share link (env T2I_SHARE=1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    settings = dataclasses.replace(settings, port=args.port, host=args.host, default_model=args.model, share=args.share)
    place_uploads(settings)
    from t2i.studio import Studio
    from t2i.ui import CSS, build_app  # imports gradio: only now that its upload folder is set
    demo = build_app(Studio(settings), gpu=zero_gpu())
    demo.launch(server_name=settings.host, server_port=settings.port, share=settings.share,
                max_file_size=f"{settings.max_upload_mb}mb", allowed_paths=served_folders(settings), show_error=True,
                css=CSS, app_kwargs=app_options(settings))


if __name__ == "__main__":
    main()
