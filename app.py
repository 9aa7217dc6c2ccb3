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

from t2i.api.checks import check_api_start  # noqa: E402
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
    """The data folders whose files the pages show (outputs, training uploads and samples, histories); Gradio's file
    route serves these, so the rest of the data folder (safety audit log, LoRA library) stays private."""
    return [str(settings.data_dir / name) for name in ("sessions", "training-uploads", "training", "history")]


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
    if settings.share or (settings.host not in LOOPBACK_HOSTS and not settings.allowed_hosts):
        return {}  # a share tunnel forwards its own host name; beyond loopback any name, unless T2I_ALLOWED_HOSTS
    return {"middleware": [Middleware(TrustedHostMiddleware,
                                      allowed_hosts=[*LOOPBACK_HOSTS, *settings.allowed_hosts])]}


def main() -> None:
    settings = load_settings()  # a bad T2I_* variable stops the app here, before the model stack is imported
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=settings.port, help="env T2I_PORT")
    parser.add_argument("--host", default=settings.host, help="env T2I_HOST")
    parser.add_argument("--model", default=settings.default_model, help="default model (env T2I_MODEL)")
    parser.add_argument("--share", action="store_true", default=settings.share, help="Gradio share link (env T2I_SHARE=1)")
    parser.add_argument("--api", action="store_true", default=settings.api,
                        help="also serve the A1111 /sdapi/v1 and OpenAI /v1/images APIs (env T2I_API=1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    settings = dataclasses.replace(settings, port=args.port, host=args.host, default_model=args.model, share=args.share,
                                   api=args.api)
    if settings.api:
        if settings.share:
            raise SystemExit("t2i: --api and --share do not go together: a share link would open the APIs to anyone")
        check_api_start(settings.host, settings.api_key, LOOPBACK_HOSTS)
    place_uploads(settings)
    from t2i.studio import Studio
    from t2i.ui import CSS, build_app  # imports gradio: only now that its upload folder is set
    studio = Studio(settings)
    demo = build_app(studio, gpu=zero_gpu())
    if settings.api:  # one port for both: the APIs' routes, and the page mounted beside them
        import gradio as gr
        import uvicorn

        from t2i.api.server import api_app

        app = gr.mount_gradio_app(api_app(studio, **app_options(settings)), demo, path="/",
                                  max_file_size=f"{settings.max_upload_mb}mb", allowed_paths=served_folders(settings),
                                  show_error=True, css=CSS)
        uvicorn.run(app, host=settings.host, port=settings.port)
        return
    demo.launch(server_name=settings.host, server_port=settings.port, share=settings.share,
                max_file_size=f"{settings.max_upload_mb}mb", allowed_paths=served_folders(settings), show_error=True,
                css=CSS, app_kwargs=app_options(settings))


if __name__ == "__main__":
    main()
