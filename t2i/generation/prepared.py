"""A prepared request: what is settled before its model is taken, and the recipe each of its images records."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image, ImageOps

from t2i import __version__
from t2i.generation.inpaint_area import inpaint_inputs
from t2i.generation.outpaint import canvas_size, extend_canvas, outpaint_sides
from t2i.models.cache import LoadedModel
from t2i.plugins import Plugin
from t2i.request import MAX_SEED, GenerationRequest
from t2i.styles import StyledPrompt


@dataclass
class PreparedRequest:
    """A validated request with what is settled before its model is taken: units, styled prompts, size, seed."""

    request: GenerationRequest
    model: LoadedModel
    used: list[tuple[Plugin, list[dict]]]  # plugins with units, adapters found in the prompt included
    styled: StyledPrompt
    width: int
    height: int
    base_seed: int
    audit_id: str  # ties this request's safety verdicts together in the audit log
    templates: dict = field(default_factory=dict)  # the dynamic prompts expanded into the prompts (wildcards.py)

    @property
    def adapters(self) -> list[tuple[Plugin, list[dict]]]:
        return [(plugin, units) for plugin, units in self.used if plugin.kind == "adapter"]

    @property
    def conditioners(self) -> list[tuple[Plugin, list[dict]]]:
        return [(plugin, units) for plugin, units in self.used if plugin.kind == "conditioner"]

    def seeds(self, batch: int) -> list[int]:
        """The seed of each image in batch number `batch` (from 0): consecutive from the base seed."""
        size = self.request.batch_size
        return [(self.base_seed + batch * size + k) % (MAX_SEED + 1) for k in range(size)]

    def described(self) -> dict:
        """What the used plugins add to the recipe (e.g. LoRA hashes)."""
        return {k: v for plugin, units in self.used for k, v in plugin.describe(units).items()}

    def mode_inputs(self) -> dict:
        """The init image, strength and mask as the pipeline takes them (empty for txt2img)."""
        request, size = self.request, (self.width, self.height)
        if request.init_image is None:
            return {}
        image, mask = request.init_image, request.mask
        if mask is not None and request.inpainting_mask_invert:
            mask = ImageOps.invert(mask.convert("L"))
        if canvas_size(request):  # outpainting: a larger canvas whose new area is repainted
            image, mask = extend_canvas(image, mask, **outpaint_sides(request))
        if mask is not None:  # masked content, mask blur, inpaint area (t2i/generation/inpaint_area.py)
            return inpaint_inputs(request, image, mask, size)
        return {"image": image.convert("RGB").resize(size, Image.Resampling.LANCZOS), "strength": request.strength}

    def guidance(self) -> dict:
        """The guidance arguments under the names the model's family takes: CFG, distilled guidance, token limit."""
        family, request = self.model.family_spec, self.request
        arguments = {family.cfg_arg: request.cfg} if family.cfg_arg else {}
        if self.model.distilled_cfg is not None:
            arguments[family.distilled_arg] = request.distilled_cfg
        if family.token_limit_arg:
            arguments[family.token_limit_arg] = family.token_limit
        return arguments

    def parameters(self, seed: int, described: dict) -> dict:
        """The recipe that remakes the image of `seed` on its own."""
        request, model, styled = self.request, self.model, self.styled
        params = request.recipe()
        described = {**self.templates, **described}
        if described:  # e.g. LoRA hashes; units written in the prompt stay in the recorded prompt
            params["infotext_extra"] = described
        params.update(seed=seed, width=self.width, height=self.height, batch_size=1, batch_count=1, model=model.name,
                      model_hash=model.short_hash, family=model.family, mode=request.mode, final_prompt=styled.prompt,
                      final_negative_prompt=styled.negative_prompt, generator=f"t2i {__version__}")
        if request.init_image is None:
            params.pop("strength")
        if canvas_size(request):  # what made the canvas, though links (which carry no image) leave it out
            params.update({f"outpaint_{side}": pixels for side, pixels in outpaint_sides(request).items()})
        if model.distilled_cfg is None:  # written only for models that have it, as Forge writes it
            params.pop("distilled_cfg", None)
        return params
