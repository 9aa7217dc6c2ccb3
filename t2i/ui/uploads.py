"""Uploads per browser session: each handler records the files it received, and a closing page deletes them."""

from __future__ import annotations

import logging

import gradio as gr

from t2i.settings import Settings
from t2i.studio import Studio

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 300  # how often the backstop looks for expired uploads, at most


def track_uploads(studio: Studio, request: gr.Request | None, *values) -> None:
    """Record the uploaded files among a handler's input `values` for the request's browser session; refuse,
    naming the file but not where the server kept it, when an upload is no longer there."""
    if gone := studio.uploads.gone(*values):
        raise gr.Error(f"the uploaded file {gone[0]} is no longer on the server; upload it again")
    studio.uploads.track(request.session_hash if request is not None else "", *values)


def upload_sweep(settings: Settings) -> tuple[int, int] | None:
    """Gradio's `delete_cache` (frequency, age) for T2I_UPLOAD_TTL_S: the backstop for sessions that never end
    (a killed browser, a client that never connects a heartbeat); None when it is off."""
    ttl = settings.upload_ttl_s
    return (min(ttl, SWEEP_EVERY_S), ttl) if ttl > 0 else None


def wire_upload_sessions(demo: gr.Blocks, studio: Studio) -> None:
    """Record each upload for its session as it lands, and delete a session's uploads when its page closes (its
    heartbeat connection ends); outputs are kept."""

    def record(value=None, request: gr.Request = None):
        studio.uploads.track(request.session_hash if request is not None else "", value)

    # every file or image input, whoever built it: a page may hold an upload for minutes before a handler uses it,
    # and another page closing meanwhile must not delete a file they share (Gradio keeps identical uploads once)
    for block in list(demo.blocks.values()):
        if "upload" in _event_names(block) and getattr(block, "interactive", None) is not False:
            # preprocess=False: the file's record (its path) arrives as sent, nothing is decoded
            block.upload(record, block, None, preprocess=False, queue=False, show_progress="hidden",
                         api_visibility="private")

    def end_session(request: gr.Request = None):
        if request is not None and request.session_hash:
            deleted = studio.uploads.end(request.session_hash)
            log.info("session ended: %d uploads deleted", len(deleted))

    demo.unload(end_session)


def _event_names(block) -> list[str]:
    """The events a component can fire ('upload', 'change', ...)."""
    return [getattr(event, "event_name", event) for event in getattr(block, "EVENTS", ())]
