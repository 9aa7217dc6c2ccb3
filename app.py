"""t2i studio: `python app.py [--port N] [--host ADDR] [--model SPEC] [--share]` (also a Hugging Face Space)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from t2i.settings import Settings  # noqa: E402
from t2i.studio import Studio  # noqa: E402
from t2i.ui import CSS, build_app  # noqa: E402


def zero_gpu():
    """spaces.GPU on Hugging Face ZeroGPU hardware; elsewhere the work runs as it is."""
    try:
        import spaces
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=120)


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=settings.port, help="env T2I_PORT")
    parser.add_argument("--host", default=settings.host, help="env T2I_HOST")
    parser.add_argument("--model", default=settings.default_model, help="default model (env T2I_MODEL)")
    parser.add_argument("--share", action="store_true", default=settings.share, help="Gradio share link (env T2I_SHARE=1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    settings = dataclasses.replace(settings, port=args.port, host=args.host, default_model=args.model, share=args.share)
    demo = build_app(Studio(settings), gpu=zero_gpu())
    demo.launch(server_name=settings.host, server_port=settings.port, share=settings.share,
                max_file_size=f"{settings.max_upload_mb}mb", allowed_paths=[str(settings.data_dir)], show_error=True,
                css=CSS)


if __name__ == "__main__":
    main()
