"""The API server: both REST front ends on one FastAPI app, sharing one job registry."""

from __future__ import annotations

from fastapi import FastAPI

from t2i.api.jobs import Jobs
from t2i.api.openai_images import openai_router
from t2i.api.sdapi import sdapi_router
from t2i.studio import Studio


def api_app(studio: Studio, **options) -> FastAPI:
    """A FastAPI app serving both APIs over `studio`; `options` go to FastAPI (e.g. its middleware)."""
    app = FastAPI(title="t2i API", docs_url=None, redoc_url=None, openapi_url=None, **options)
    jobs = Jobs(studio)
    app.include_router(sdapi_router(studio, jobs))
    app.include_router(openai_router(studio, jobs))
    return app
