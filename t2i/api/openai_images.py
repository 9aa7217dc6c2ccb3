"""The OpenAI images API (`/v1/images/generations`, `/v1/images/edits`, `/v1/models`) over the Studio.

OpenAI's fields map onto the Studio's form (`size` "WxH", `n` images, `model` one of GET /v1/models, `user` part
of the caller's identity); t2i's own fields ride along in the body, the way the SDK's `extra_body` sends them:
negative_prompt, seed, steps, guidance_scale, sampler, styles, strength. Errors come in OpenAI's shape. Images
come back as base64 PNGs with recipe and labels (`b64_json`, the default), or as links (`url`) to PNGs kept in
memory for URL_TTL_S seconds: nothing is written to disk.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from t2i.api.auth import Unauthorized, caller_of, check_key
from t2i.api.http import Unprocessable, body_cap, json_object, read_body, status_of
from t2i.api.images import base64_text, result_pngs
from t2i.api.jobs import Jobs
from t2i.api.sdapi import ModelChoices
from t2i.safety.gate import PromptRefused
from t2i.studio import GenerateForm, Studio

URL_TTL_S = 3600  # how long a `url` answer's PNG stays fetchable, as OpenAI's links do
MAX_LINKED = 256  # PNGs kept for links at most (the oldest go first)
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
# OpenAI fields t2i accepts, with the values it can honour (None: any value, ignored)
OPENAI_FIELDS = {"model": None, "prompt": None, "n": None, "size": None, "response_format": ("b64_json", "url"),
                 "user": None, "quality": None, "style": None, "moderation": None,
                 "output_format": ("png",), "background": ("auto", "opaque"), "stream": (False,),
                 "partial_images": (0,), "output_compression": None, "input_fidelity": None}
# t2i's own fields, as extra_body sends them, and the form field each fills
EXTRA_FIELDS = {"negative_prompt": "negative_prompt", "seed": "seed", "steps": "steps", "guidance_scale": "cfg",
                "sampler": "sampler", "styles": "styles", "strength": "strength"}


class OpenAIError(Exception):
    """An error about one parameter, answered with status 400 in OpenAI's shape."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class ImageLinks:
    """PNGs answered as `url`, kept in memory under unguessable names until they expire."""

    def __init__(self):
        self._images: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, png: bytes) -> str:
        name = secrets.token_urlsafe(24)
        with self._lock:
            self._images[name] = (time.monotonic() + URL_TTL_S, png)
            while len(self._images) > MAX_LINKED:
                self._images.popitem(last=False)
        return name

    def get(self, name: str) -> bytes | None:
        with self._lock:
            expires, png = self._images.get(name, (0.0, b""))
        return png if expires > time.monotonic() else None


def openai_router(studio: Studio, jobs: Jobs) -> APIRouter:
    """The /v1 images routes over `studio`; Bearer key when one is set."""
    settings = studio.settings
    models = ModelChoices(studio)
    links = ImageLinks()
    router = APIRouter(prefix="/v1")

    @router.post("/images/generations")
    async def generations(request: Request):
        return await _answer(lambda: _generations(request))

    async def _generations(request: Request) -> dict:
        user = check_key(request, settings.api_key, basic=False)
        values = json_object(await read_body(request, body_cap(settings.max_upload_mb, 0)))
        return await _run(request, user, values, {})

    @router.post("/images/edits")
    async def edits(request: Request):
        return await _answer(lambda: _edits(request))

    async def _edits(request: Request) -> dict:
        user = check_key(request, settings.api_key, basic=False)
        values, files = await _multipart(request, settings.max_upload_mb)
        images = files.pop("image", None) or files.pop("image[]", None)
        values.pop("image", None)  # text where the file belongs (a URL, a path): never fetched or opened
        if images is None:
            raise OpenAIError("image is required: the picture to edit, as a PNG file", "image")
        uploads = {"init_image": images}
        if "mask" in files:
            uploads["mask"] = files.pop("mask")
        if files:
            raise OpenAIError(f"unknown file field(s): {', '.join(files)}", next(iter(files)))
        return await _run(request, user, values, uploads)

    async def _run(request: Request, user: str, values: dict, uploads: dict) -> dict:
        form, response_format = _form(values, models, uploads)
        who = caller_of(request, user, client_id=str(values.get("user") or ""))
        if form.model == "":
            form.model = models.current(who)
        result = await jobs.run(who, form, request)
        if result is None:
            raise OpenAIError("the generation was cancelled")
        data = []
        for png in result_pngs(result, studio.labeller):
            if response_format == "url":
                data.append({"url": str(request.url_for("linked_image", name=links.add(png))),
                             "revised_prompt": None})
            else:
                data.append({"b64_json": base64_text(png), "revised_prompt": None})
        answer = {"created": int(time.time()), "data": data, "output_format": "png"}
        notices = [item.notice for item in result.images if item.notice]
        if notices:  # e.g. a content warning of a `warn` safety category (names the category, never the word)
            answer["t2i_notices"] = notices
        return answer

    @router.get("/images/files/{name}", name="linked_image")
    async def linked_image(name: str):
        # the unguessable name is the key: clients fetch these links without credentials, as OpenAI's
        png = links.get(name.removesuffix(".png"))
        if png is None:
            return _error(404, "this image link is unknown or has expired", "invalid_request_error", None, "not_found")
        return Response(png, media_type="image/png")

    @router.get("/models")
    async def list_models(request: Request):
        async def listed():
            check_key(request, settings.api_key, basic=False)
            return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "t2i"}
                                               for name in models.offered()]}
        return await _answer(listed)

    return router


def _form(values: dict, models: ModelChoices, uploads: dict) -> tuple[GenerateForm, str]:
    """The Studio's form for an OpenAI body (plus uploaded images), and the response format asked for."""
    unknown = sorted(set(values) - set(OPENAI_FIELDS) - set(EXTRA_FIELDS))
    if unknown:
        raise OpenAIError(f"unknown parameter(s): {', '.join(unknown)}", unknown[0])
    for name, allowed in OPENAI_FIELDS.items():
        if allowed is not None and name in values and values[name] is not None and values[name] not in allowed:
            raise OpenAIError(f"{name}={values[name]!r} is not available in t2i; use one of "
                              f"{', '.join(map(str, allowed))}", name)
    prompt = values.get("prompt")
    if not isinstance(prompt, str):
        raise OpenAIError("prompt is required and must be text", "prompt")
    n = values.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int):
        raise OpenAIError(f"n must be a whole number; got {n!r}", "n")
    form = GenerateForm(prompt=prompt, batch_size=n, model=_model(values.get("model"), models))
    size = values.get("size") or "auto"
    if size != "auto":
        match = _SIZE.match(size) if isinstance(size, str) else None
        if match is None:
            raise OpenAIError(f"size must be 'auto' or WIDTHxHEIGHT such as '512x512'; got {size!r}", "size")
        form.width, form.height = int(match.group(1)), int(match.group(2))
    for name, field_name in EXTRA_FIELDS.items():
        if values.get(name) is not None:
            setattr(form, field_name, tuple(values[name]) if name == "styles" and isinstance(values[name], list)
                    else values[name])
    for name, data in uploads.items():
        setattr(form, name, data)
    return form, values.get("response_format") or "b64_json"


def _model(name, models: ModelChoices) -> str:
    """The model a request names ('' for the caller's default); OpenAI's own model names are not t2i's."""
    if name in (None, ""):
        return ""
    if not isinstance(name, str):
        raise OpenAIError("model must be a model id from GET /v1/models", "model")
    try:
        return models.spec(name)
    except Exception as exc:
        raise OpenAIError(f"unknown model {name!r}: GET /v1/models lists this server's models ({exc})",
                          "model") from None


async def _multipart(request: Request, max_upload_mb: int) -> tuple[dict, dict[str, bytes]]:
    """The form fields (JSON-like values: numbers parsed) and the uploaded files' bytes of a multipart body, held in
    memory only (under the upload caps), never spooled to disk."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise OpenAIError("images/edits takes multipart/form-data: the image (and mask) as files, the rest as fields")
    cap = body_cap(max_upload_mb, 2)
    raw = await read_body(request, cap)

    async def body():
        yield raw

    parser = MultiPartParser(request.headers, body(), max_files=4, max_fields=40, max_part_size=1 << 20)
    parser.spool_max_size = cap  # uploads stay in memory: the whole body is already under the cap
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise OpenAIError(f"the multipart body could not be read: {exc.message}") from None
    values, files = {}, {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            files[key] = await value.read()
            await value.close()
        else:
            values[key] = _form_value(key, value)
    return values, files


def _form_value(key: str, text: str):
    """A multipart text field as the JSON body would carry it: whole numbers and numbers parsed, the rest text."""
    if key in ("n", "seed", "steps", "partial_images") and re.fullmatch(r"-?\d{1,12}", text):
        return int(text)
    if key in ("guidance_scale", "strength") and re.fullmatch(r"-?\d{1,6}(\.\d{1,6})?", text):
        return float(text)
    if key == "stream":
        return text.lower() == "true"
    return text


async def _answer(work) -> object:
    """The route's answer, or its error in OpenAI's shape."""
    try:
        return await work()
    except OpenAIError as error:
        return _error(400, str(error), "invalid_request_error", error.param, None)
    except Exception as error:  # every failure is an answer; the server keeps serving
        status = 400 if isinstance(error, Unprocessable) else status_of(error)
        message = str(error) if status != 500 else f"{type(error).__name__}: the server could not do this request"
        kind = {401: "authentication_error", 429: "rate_limit_error", 503: "server_error",
                500: "server_error"}.get(status, "invalid_request_error")
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded", 503: "server_busy"}.get(status)
        if isinstance(error, PromptRefused):
            code = "content_policy_violation"
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None
        return _error(status, message, kind, None, code, headers)


def _error(status: int, message: str, kind: str, param: str | None, code: str | None,
           headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)
