"""The AUTOMATIC1111 API (`/sdapi/v1`), the subset real clients call, as a thin front end over the Studio.

txt2img and img2img map A1111's fields (t2i/api/sdapi_schema.py) onto the Studio's form and run the Studio's one
path (Studio.run: rate limit, checks, the safety gate, the shared queue); images come back as PNGs with the
recipe and labels the page's files carry. The listing routes answer from the same core, with names and never
server paths. /progress, /interrupt and /skip act on the caller's own jobs (t2i/api/auth.py).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections import OrderedDict
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from PIL import Image, ImageOps
from pydantic import ValidationError

from t2i.api.auth import Caller, Unauthorized, caller_of, check_key
from t2i.api.http import Unprocessable, body_cap, json_object, read_body, status_of
from t2i.api.images import base64_text, decode_base64_image, result_pngs
from t2i.api.jobs import Jobs
from t2i.api.sdapi_schema import (MASKED_CONTENT_BY_INDEX, OVERRIDES_OFF_ONLY, OWN_VAE, Img2ImgBody, Txt2ImgBody,
                                  _one_of, explain)
from t2i.generation.samplers import SAMPLERS
from t2i.models.access import check_server_model
from t2i.models.upscalers import LATENT_MODES
from t2i.recipes.infotext import infotext
from t2i.recipes.pnginfo import read_png
from t2i.request import INPAINT_AREAS, REQUEST_FIELDS, GenerationResult
from t2i.settings import Settings
from t2i.studio import GenerateForm, Studio
from t2i.web.uploads import load_image_file

SCHEDULERS = {"automatic": "Automatic", "karras": "Karras"}  # Karras picks a sampler's "... Karras" variant
MAX_CALLERS = 1000  # callers whose chosen model is remembered (the oldest are forgotten first)
_TITLE_HASH = re.compile(r"\s*\[[0-9a-fA-F]{8,64}\]$")  # A1111 titles: "name.safetensors [hash]"


class ModelChoices:
    """Each caller's model (POST /options), remembered for that caller only; unset: the server's default."""

    def __init__(self, studio: Studio):
        self.studio = studio
        self._chosen: OrderedDict[str, str] = OrderedDict()

    def offered(self) -> dict[str, str]:
        """The models to list, by the name a client sees (a local path shows as its file or folder name)."""
        return {(Path(spec).name if Path(spec).expanduser().exists() else spec): spec
                for spec in self.studio.model_choices()}

    def spec(self, name: str) -> str:
        """The model a client's name stands for, if this server offers it (RequestError if not)."""
        name = _TITLE_HASH.sub("", name.strip())
        spec = self.offered().get(name, name)
        check_server_model(spec, self.studio.settings)
        return spec

    def current(self, caller: Caller) -> str:
        return self._chosen.get(caller.session) or self.studio.settings.default_model

    def choose(self, caller: Caller, name: str) -> None:
        self._chosen[caller.session] = self.spec(name)
        self._chosen.move_to_end(caller.session)
        while len(self._chosen) > MAX_CALLERS:
            self._chosen.popitem(last=False)

    def shown(self, spec: str) -> str:
        return next((name for name, offered in self.offered().items() if offered == spec), spec)


def sdapi_router(studio: Studio, jobs: Jobs) -> APIRouter:
    """The /sdapi/v1 routes over `studio`; every route needs the key when one is set."""
    settings = studio.settings
    models = ModelChoices(studio)

    def caller(request: Request) -> Caller:
        return caller_of(request, check_key(request, settings.api_key))

    router = APIRouter(prefix="/sdapi/v1")

    @router.post("/txt2img")
    async def txt2img(request: Request):
        return await _answer(lambda: _generate(request, Txt2ImgBody, 0))

    @router.post("/img2img")
    async def img2img(request: Request):
        return await _answer(lambda: _generate(request, Img2ImgBody, 2))

    async def _generate(request: Request, schema, images: int) -> dict:
        who = caller(request)
        raw = await read_body(request, body_cap(settings.max_upload_mb, images))
        try:
            body = schema.model_validate(json_object(raw))
        except ValidationError as error:
            raise Unprocessable(explain(error)) from None
        if problems := body.unsupported():
            raise Unprocessable("; ".join(problems))
        chosen = (body.override_settings or {}).get("sd_model_checkpoint") or models.current(who)
        if not isinstance(chosen, str):
            raise Unprocessable("override_settings.sd_model_checkpoint must be a model name (GET /sdapi/v1/sd-models)")
        form = _form(body, models.spec(chosen), settings)
        result = await jobs.run(who, form, request)
        return _response(body, result, studio)

    @router.get("/options")
    async def get_options(request: Request):
        return await _answer(lambda: _options(caller(request)))

    async def _options(who: Caller) -> dict:
        spec = models.current(who)
        loaded = spec in studio.engine.models.loaded()
        return {"sd_model_checkpoint": models.shown(spec),
                "sd_checkpoint_hash": studio.engine.models.get(spec).short_hash or None if loaded else None,
                "samples_format": "png", "CLIP_stop_at_last_layers": 1, "sd_vae": "Automatic"}

    @router.post("/options")
    async def set_options(request: Request):
        return await _answer(lambda: _set_options(request))

    async def _set_options(request: Request) -> dict:
        who = caller(request)
        values = json_object(await read_body(request, 1 << 20))
        problems = [f"{name}: t2i keeps no server options; only sd_model_checkpoint can be set (for this caller)"
                    for name, value in values.items() if name != "sd_model_checkpoint" and not (
                        name in OVERRIDES_OFF_ONLY and _one_of(value, OVERRIDES_OFF_ONLY[name][0]))]
        if problems:
            raise Unprocessable("; ".join(problems))
        if "sd_model_checkpoint" in values:
            if not isinstance(values["sd_model_checkpoint"], str):
                raise Unprocessable("sd_model_checkpoint must be a model name (GET /sdapi/v1/sd-models)")
            models.choose(who, values["sd_model_checkpoint"])
        return {}

    def listing(path: str, answer):
        async def route(request: Request):
            return await _answer(lambda: _listed(request, answer))

        router.add_api_route(path, route, methods=["GET"], name=path.strip("/"))

    async def _listed(request: Request, answer):
        caller(request)
        return answer()

    listing("/sd-models", lambda: [{"title": name, "model_name": Path(name).stem if name.endswith(".safetensors")
                                    else name, "hash": None, "sha256": None, "filename": name, "config": None}
                                   for name in models.offered()])
    listing("/samplers", lambda: [{"name": name, "aliases": [], "options": {}} for name in SAMPLERS])
    listing("/schedulers", lambda: [{"name": name, "label": label, "aliases": None, "default_rho": -1,
                                     "need_inner_model": False} for name, label in SCHEDULERS.items()])
    listing("/loras", lambda: [{"name": name, "alias": name, "path": name, "metadata": {}}
                               for name in _lora_names(studio)])
    listing("/prompt-styles", lambda: [{"name": name, "prompt": studio.engine.styles.get(name).prompt,
                                        "negative_prompt": studio.engine.styles.get(name).negative_prompt}
                                       for name in studio.engine.styles.names()])
    extras = studio.engine.runner.extras  # the VAE, upscaler and embedding libraries
    listing("/sd-vae", lambda: [{"model_name": name, "filename": name} for name in extras.vaes.names()[1:]])
    listing("/upscalers", lambda: [{"name": name, "model_name": None, "model_path": None, "model_url": None,
                                    "scale": None} for name in extras.upscalers.names() if name not in LATENT_MODES])
    listing("/latent-upscale-modes", lambda: [{"name": name} for name in LATENT_MODES])
    listing("/sd-modules", list)
    listing("/embeddings", lambda: {"loaded": {name: {} for name in extras.embeddings.names()}, "skipped": {}})
    listing("/scripts", lambda: {"txt2img": [], "img2img": []})

    @router.post("/png-info")
    async def png_info(request: Request):
        return await _answer(lambda: _png_info(request))

    async def _png_info(request: Request) -> dict:
        caller(request)
        values = json_object(await read_body(request, body_cap(settings.max_upload_mb, 1)))
        data = decode_base64_image(values.get("image"), "image", settings.max_upload_mb << 20)
        recipe = read_png(data)
        with Image.open(io.BytesIO(data)) as image:
            items = {key: value for key, value in image.info.items() if isinstance(value, str)}
        form = recipe.form
        parameters = {"Prompt": form.get("prompt", ""), "Negative prompt": form.get("negative_prompt", ""),
                      **{label: form[name] for name, label in (("steps", "Steps"), ("sampler", "Sampler"),
                                                               ("cfg", "CFG scale"), ("seed", "Seed"),
                                                               ("width", "Size-1"), ("height", "Size-2"),
                                                               ("model", "Model")) if name in form}}
        return {"info": recipe.text, "items": items, "parameters": parameters}

    @router.get("/progress")
    async def progress(request: Request, skip_current_image: bool = False):
        return await _answer(lambda: _progress(caller(request), skip_current_image))

    async def _progress(who: Caller, skip_image: bool) -> dict:
        running = jobs.running(who)
        job = running[0] if running else None
        event = job.progress if job else None
        done = ((event.batch - 1 + event.step / event.total_steps) / event.total_batches) if event else 0.0
        elapsed = time.time() - job.started if job else 0.0
        image = None
        if job and job.preview is not None and not skip_image:
            buffer = io.BytesIO()
            job.preview.save(buffer, format="PNG")
            image = base64_text(buffer.getvalue())
        return {"progress": done, "eta_relative": elapsed / done - elapsed if done > 0 else 0.0,
                "state": {"skipped": False, "interrupted": bool(job and job.cancel.is_set()),
                          "stopping_generation": False, "job": "txt2img" if job else "", "job_count": len(running),
                          "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.started)) if job else "0",
                          "job_no": 0, "sampling_step": event.step if event else 0,
                          "sampling_steps": event.total_steps if event else 0},
                "current_image": image, "textinfo": None, "current_task": None}

    # A1111's skip moves on to the next image of a batch; t2i runs a request as a whole, so skip stops the
    # caller's job like interrupt does (README, Clients)
    for path in ("/interrupt", "/skip"):
        @router.post(path, name=path.strip("/"))
        async def interrupt(request: Request):
            return await _answer(lambda: _interrupt(request))

    async def _interrupt(request: Request) -> dict:
        return {"interrupted": jobs.interrupt(caller(request))}

    return router


async def _answer(work) -> object:
    """The route's answer, or its error in the shape A1111 clients read (`detail` holds the message)."""
    try:
        return await work()
    except Exception as error:  # every failure is an answer; the server keeps serving
        status = status_of(error)
        message = str(error) if status != 500 else f"{type(error).__name__}: the server could not do this request"
        headers = {"WWW-Authenticate": 'Basic realm="t2i", Bearer'} if isinstance(error, Unauthorized) else None
        return JSONResponse({"error": type(error).__name__, "detail": message, "body": "", "errors": message},
                            status_code=status, headers=headers)


def _sampler(body) -> str:
    """Our sampler name for A1111's sampler_name (or sampler_index) and scheduler."""
    name = body.sampler_name or body.sampler_index or REQUEST_FIELDS["sampler"].default
    schedule = (body.scheduler or "automatic").strip().lower()
    if schedule == "automatic":
        return name
    if schedule == "karras":
        return name if name.endswith(" Karras") else f"{name} Karras"
    raise Unprocessable(f"scheduler={body.scheduler!r}: t2i offers {', '.join(SCHEDULERS)}")


def _form(body, model: str, settings: Settings) -> GenerateForm:
    """The Studio's form for an A1111 body (images as bytes, decoded and checked by the Studio)."""
    values = dict(prompt=body.prompt, negative_prompt=body.negative_prompt or "", styles=tuple(body.styles or ()),
                  model=model, sampler=_sampler(body), seed=body.seed, batch_count=body.n_iter,
                  batch_size=body.batch_size)
    for ours, theirs in (("steps", "steps"), ("cfg", "cfg_scale"), ("distilled_cfg", "distilled_cfg_scale"),
                         ("width", "width"), ("height", "height")):
        if getattr(body, theirs) is not None:
            values[ours] = getattr(body, theirs)
    overrides = body.override_settings or {}
    if overrides.get("CLIP_stop_at_last_layers") is not None:
        values["clip_skip"] = overrides["CLIP_stop_at_last_layers"]
    if overrides.get("sd_vae") not in OWN_VAE:  # a VAE of the server's VAE folder, by name
        values["vae"] = overrides["sd_vae"]
    if body.enable_hr:
        values.update(_hires(body))
    if isinstance(body, Img2ImgBody):
        max_image_bytes = settings.max_upload_mb << 20
        if len(body.init_images) != 1:
            raise Unprocessable(f"init_images: t2i takes exactly one init image; got {len(body.init_images)}")
        values["init_image"] = decode_base64_image(body.init_images[0], "init image", max_image_bytes)
        if body.mask:
            values["mask"] = _mask(decode_base64_image(body.mask, "mask", max_image_bytes),
                                   body.inpainting_mask_invert, settings)
            values.update(_inpainting(body))
        if body.denoising_strength is not None:
            values["strength"] = body.denoising_strength
    return GenerateForm(**values)


def _hires(body) -> dict:
    """The hires fix fields for A1111's enable_hr and hr_* (A1111's defaults where a field is left out)."""
    values = {"hires_scale": 2.0 if body.hr_scale is None else body.hr_scale}
    for ours, theirs in (("hires_width", "hr_resize_x"), ("hires_height", "hr_resize_y"),
                         ("hires_steps", "hr_second_pass_steps"), ("hires_upscaler", "hr_upscaler"),
                         ("hires_prompt", "hr_prompt"), ("hires_negative_prompt", "hr_negative_prompt")):
        if getattr(body, theirs) is not None:
            values[ours] = getattr(body, theirs)
    if body.hr_sampler_name not in (None, "", "Use same sampler"):
        values["hires_sampler"] = body.hr_sampler_name
    if body.denoising_strength is not None and not isinstance(body, Img2ImgBody):
        values["hires_denoise"] = body.denoising_strength
    return values


def _inpainting(body) -> dict:
    """Mask blur, masked content and inpaint area for the options the body sets (others: t2i's defaults)."""
    values = {}
    if body.mask_blur is not None:
        values["mask_blur"] = body.mask_blur
    if body.inpainting_fill is not None:
        if body.inpainting_fill not in range(len(MASKED_CONTENT_BY_INDEX)):
            raise Unprocessable(f"inpainting_fill must be 0 (fill), 1 (original), 2 (latent noise) or 3 (latent "
                                f"nothing); got {body.inpainting_fill!r}")
        values["masked_content"] = MASKED_CONTENT_BY_INDEX[body.inpainting_fill]
    if body.inpaint_full_res is not None:
        if body.inpaint_full_res not in (0, 1):
            raise Unprocessable(f"inpaint_full_res must be true/1 (only masked) or false/0 (whole picture); got "
                                f"{body.inpaint_full_res!r}")
        values["inpaint_area"] = INPAINT_AREAS[1] if body.inpaint_full_res else INPAINT_AREAS[0]  # only masked / whole
    if body.inpaint_full_res_padding is not None:
        values["inpaint_padding"] = body.inpaint_full_res_padding
    return values


def _mask(data: bytes, invert: int, settings: Settings) -> bytes:
    """The mask bytes as sent, or (inpainting_mask_invert=1) inverted, decoded under the upload caps."""
    if invert not in (0, 1):
        raise Unprocessable(f"inpainting_mask_invert must be 0 or 1; got {invert!r}")
    if invert == 0:
        return data
    mask = load_image_file(data, settings.max_upload_mb << 20, settings.max_pixels, what="mask")
    buffer = io.BytesIO()
    ImageOps.invert(mask.convert("L")).save(buffer, format="PNG")
    return buffer.getvalue()


def _response(body, result: GenerationResult | None, studio: Studio) -> dict:
    """A1111's answer: base64 PNGs, the request's parameters, and `info` as a JSON string."""
    parameters = body.model_dump(exclude_unset=True, exclude={"init_images", "mask", "auth", "url"})
    ignored = body.ignored()
    ignored.pop("auth", None)
    if result is None:  # interrupted, or the client went away
        return {"images": [], "parameters": parameters,
                "info": json.dumps({"interrupted": True, "infotexts": [], "t2i_ignored": ignored})}
    shown = [item for item in result.images if item.image is not None]
    params = [item.parameters for item in shown]
    first = params[0]
    info = {
        "prompt": first["prompt"], "all_prompts": [p["prompt"] for p in params],
        "negative_prompt": first["negative_prompt"], "all_negative_prompts": [p["negative_prompt"] for p in params],
        "seed": first["seed"], "all_seeds": [p["seed"] for p in params], "subseed": -1,
        "all_subseeds": [-1] * len(params), "subseed_strength": 0, "width": first["width"],
        "height": first["height"], "sampler_name": first["sampler"], "cfg_scale": first["cfg"],
        "steps": first["steps"], "batch_size": body.batch_size, "restore_faces": False,
        "sd_model_name": first["model"], "sd_model_hash": first.get("model_hash") or None,
        "denoising_strength": first.get("strength"), "styles": first.get("styles", []),
        "index_of_first_image": 0, "infotexts": [infotext(p) for p in params], "clip_skip": 1,
        "version": first.get("generator", "t2i"), "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "t2i_ignored": ignored, "t2i_notices": [item.notice for item in result.images if item.notice],
    }
    images = [base64_text(png) for png in result_pngs(result, studio.labeller)] if body.send_images else []
    return {"images": images, "parameters": parameters, "info": json.dumps(info)}


def _lora_names(studio: Studio) -> list[str]:
    """The LoRA library's names (empty when the LoRA plugin is off)."""
    lora = studio.engine.plugins.plugins.get("lora")
    return lora.library.names() if lora is not None and hasattr(lora, "library") else []

