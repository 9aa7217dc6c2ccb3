"""Plugins: named parts that declare their parameters as data and implement the hooks of one kind.

Kinds and their hooks (a subclass implements the hooks of its kind):
- PromptChecker.check_prompt(text) -> Verdict: moderation of prompts after styles are applied.
- ImageChecker.check_image(image) -> Verdict: every output, live preview and uploaded image.
- Adapter.activate(model, units) -> context manager: changes the model for one run and undoes it (LoRA).
- Conditioner.prepare(model, pipe, mode, units, width, height) -> (pipe, kwargs): extra conditioning (ControlNet).

Hooks of every kind, each with a default that does nothing, so a plugin carries its own parts:
- preview(unit, width, height) -> image or None: what one unit feeds the model, shown before generating.
- cli_flag + unit_from_cli(text): a repeatable `python -m t2i generate` flag, one unit per use (`--lora`).
- ui_module: a module of the plugin's package (e.g. ".ui") whose `create_panel(studio, plugin, context)` builds
  the plugin's own panel on the Generate tab. Only t2i.ui imports it, so the core never imports gradio.

Every plugin module exposes `register(settings) -> list[Plugin]`. Built-in plugins (the `plugins/` folder,
installed as `t2i_plugins`) and installed ones both come through the `t2i.plugins` entry-point group; the
built-in ones are those that t2i's own distribution declares. One-off plugins load from the folders in
`settings.plugin_dirs`. A plugin that fails to import or register is logged and skipped; another plugin
cannot take a built-in plugin's name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, ContextManager, Iterable, Mapping, Sequence

from PIL import Image

from t2i.request import RequestError
from t2i.settings import Settings

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "t2i.plugins"
DISTRIBUTION = "t2i"  # the entry points this distribution declares are the built-in plugins
PARAM_TYPES = ("float", "int", "bool", "choice", "text", "image")
KINDS = ("prompt_check", "image_check", "adapter", "conditioner")


@dataclass(frozen=True)
class Param:
    """One parameter of a plugin unit; the UI widgets and API parameters are built from these."""

    name: str
    type: str  # one of PARAM_TYPES
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()  # for "choice"; a plugin may offer live choices through Plugin.choices()
    label: str = ""
    help: str = ""

    def check(self, value: Any, choices: Sequence[str] = ()) -> None:
        """Raise RequestError if `value` is not a valid value of this parameter."""
        if self.type == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif self.type == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type == "bool":
            ok = isinstance(value, bool)
        elif self.type == "image":
            ok = isinstance(value, Image.Image)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise RequestError(f"{self.name} must be {'an' if self.type == 'image' else 'a'} {self.type}; got {value!r}")
        if self.type in ("float", "int"):
            if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
                raise RequestError(f"{self.name} must be from {self.minimum} to {self.maximum}; got {value!r}")
        if self.type == "choice" and value not in choices:
            shown = ", ".join(choices[:20]) or "none available"
            raise RequestError(f"unknown {self.name} {value!r}; choose one of: {shown}")


@dataclass(frozen=True)
class CliFlag:
    """A repeatable command-line flag of `python -m t2i generate`; each use gives one unit of its plugin."""

    flag: str  # e.g. "--lora"
    metavar: str  # the syntax, e.g. "PATH_OR_NAME:WEIGHT"
    help: str


@dataclass(frozen=True)
class Verdict:
    """What a checker decided about one prompt or image."""

    flagged: bool
    reason: str = ""  # for logs and operators; users are told less
    scores: dict = field(default_factory=dict)


class Plugin:
    """Base of all plugins: a unique name, a kind, and the parameters one unit of it takes."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    label: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    max_units: ClassVar[int] = 0  # how many units one request may use (0: not user-facing, e.g. checkers)
    cli_flag: ClassVar[CliFlag | None] = None  # the flag that gives units on the command line (None: no flag)
    ui_module: ClassVar[str] = ""  # the module building its own UI panel: ".ui" (in its package) or an absolute name

    def choices(self, param: Param) -> list[str]:
        """The current choices of a "choice" parameter (override for live lists such as a LoRA folder)."""
        return list(param.choices)

    def unit_from_values(self, values: Mapping[str, Any]) -> dict:
        """One validated unit: known parameter names only, defaults for the ones left out."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise RequestError(f"{self.name}: unknown parameter {unknown[0]!r}; expected: {', '.join(known)}")
        unit = {}
        for param in self.params:
            value = values.get(param.name, param.default)
            if value is None:
                raise RequestError(f"{self.name}: {param.name} is required")
            try:
                param.check(value, self.choices(param) if param.type == "choice" else ())
            except RequestError as exc:
                raise RequestError(f"{self.name}: {exc}") from None
            # a whole number is a valid float, but libraries type-check floats (diffusers' conditioning scale)
            unit[param.name] = float(value) if param.type == "float" else value
        return unit

    def describe(self, units: list[dict]) -> dict[str, str]:
        """Fields for the image's A1111 parameters text (e.g. 'Lora hashes'); none by default."""
        return {}

    def preview(self, unit: dict, width: int, height: int) -> Image.Image | None:
        """What one unit feeds the model (e.g. a ControlNet's control map), shown before generating; None: nothing."""
        return None

    def unit_from_cli(self, text: str) -> dict:
        """The unit values one use of `cli_flag` gives, checked afterwards like any unit's values."""
        return {}


class PromptChecker(Plugin):
    kind = "prompt_check"

    def check_prompt(self, text: str) -> Verdict:
        """Judge one prompt (after styles are applied)."""
        raise NotImplementedError


class ImageChecker(Plugin):
    kind = "image_check"

    def check_image(self, image: Image.Image) -> Verdict:
        """Judge one image."""
        raise NotImplementedError


class Adapter(Plugin):
    kind = "adapter"

    def units_from_prompt(self, prompt: str) -> tuple[str, list[dict]]:
        """Units written inside the prompt (e.g. `<lora:name:0.8>`) and the prompt without them."""
        return prompt, []

    def activate(self, model, units: list[dict]) -> ContextManager:
        """Apply `units` to `model` for one run (the model lock is held) and undo them on exit."""
        raise NotImplementedError


class Conditioner(Plugin):
    kind = "conditioner"

    def prepare(self, model, pipe, mode: str, units: list[dict], width: int, height: int) -> tuple[Any, dict]:
        """The pipeline to run instead of `pipe` and the extra call arguments for `units`."""
        raise NotImplementedError


class PluginManager:
    """The loaded plugins by name, and the problems met while loading them."""

    def __init__(self, plugins: Iterable[Plugin] = (), problems: Iterable[str] = ()):
        self.plugins: dict[str, Plugin] = {}
        self.problems: list[str] = list(problems)
        for plugin in plugins:
            self.add(plugin)

    def add(self, plugin: Plugin, builtin: bool = True) -> None:
        """Register one plugin; a name already taken or a bad declaration is a problem, not a crash."""
        problem = _declaration_problem(plugin)
        if problem is None and plugin.name in self.plugins:
            problem = f"plugin name {plugin.name!r} is already taken" + ("" if builtin else " by a built-in plugin")
        if problem:
            self.problems.append(problem)
            log.warning("plugin skipped: %s", problem)
            return
        self.plugins[plugin.name] = plugin

    @classmethod
    def discover(cls, settings: Settings) -> "PluginManager":
        """Built-in plugins, then the ones in the plugin folders, then other installed ones (if enabled)."""
        manager = cls()
        points = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda point: point.name)
        builtin = [point for point in points if _distribution(point) == DISTRIBUTION]
        if not builtin:
            manager.problems.append(f"no built-in plugins: the {DISTRIBUTION} package is not installed "
                                    "(run `pip install -e .` in its folder)")
            log.warning("plugin problem: %s", manager.problems[-1])
        for point in builtin:
            manager._register_from(point.name, point.load, settings, builtin=True)
        for folder in settings.plugin_dirs:
            for path in sorted(folder.iterdir()) if folder.is_dir() else ():
                if path.name.startswith(("_", ".")) or not (path.suffix == ".py" or (path / "__init__.py").exists()):
                    continue
                manager._register_from(path.stem, lambda path=path: _import_path(path), settings, builtin=True)
        if settings.entry_point_plugins:
            for point in points:
                if _distribution(point) != DISTRIBUTION:
                    manager._register_from(point.name, point.load, settings, builtin=False)
        for name in settings.disabled_plugins:
            manager.plugins.pop(name, None)
        return manager

    def _register_from(self, source: str, load, settings: Settings, builtin: bool) -> None:
        try:
            module = load()
            register = module if callable(module) else module.register
            found = list(register(settings))
        except Exception as exc:  # a broken plugin must not take the app down
            self.problems.append(f"{source}: {type(exc).__name__}: {exc}")
            log.warning("plugin %s failed to load: %s: %s", source, type(exc).__name__, exc)
            return
        for plugin in found:
            self.add(plugin, builtin=builtin)

    def of_kind(self, kind: str) -> list[Plugin]:
        """Loaded plugins of one kind, in load order."""
        return [p for p in self.plugins.values() if p.kind == kind]

    def user_facing(self) -> list[Plugin]:
        """Plugins a request can use units of (adapters and conditioners)."""
        return [p for p in self.plugins.values() if p.max_units > 0]

    def units_for_request(self, units: Mapping[str, Sequence[Mapping]]) -> dict[str, list[dict]]:
        """Validated units per plugin name; unknown plugins, too many units or bad values raise RequestError."""
        if not isinstance(units, Mapping):
            raise RequestError("plugin units must be a mapping of plugin name to a list of units")
        checked = {}
        for name, plugin_units in units.items():
            plugin = self.plugins.get(name)
            if plugin is None or plugin.max_units == 0:
                offered = ", ".join(p.name for p in self.user_facing()) or "none"
                raise RequestError(f"unknown plugin {name!r}; available: {offered}")
            if not isinstance(plugin_units, (list, tuple)) or not all(isinstance(u, Mapping) for u in plugin_units):
                raise RequestError(f"{name}: units must be a list of parameter mappings")
            if len(plugin_units) > plugin.max_units:
                raise RequestError(f"{name}: at most {plugin.max_units} units per request; got {len(plugin_units)}")
            checked[name] = [plugin.unit_from_values(u) for u in plugin_units]
        return checked


def _declaration_problem(plugin: Plugin) -> str | None:
    if not isinstance(plugin, Plugin) or not plugin.name or plugin.kind not in KINDS:
        return f"{plugin!r} is not a Plugin with a name and one of the kinds {', '.join(KINDS)}"
    for param in plugin.params:
        if param.type not in PARAM_TYPES:
            return f"{plugin.name}: parameter {param.name!r} has unknown type {param.type!r}"
    return None


def _distribution(point) -> str | None:
    """The normalised name of the distribution that declares an entry point."""
    return point.dist.name.lower().replace("_", "-") if point.dist is not None else None


def _import_path(path: Path):
    """Import a plugin module or package from a file path, under a name that cannot shadow real modules."""
    name = f"t2i_plugin_{path.stem}"
    init = path / "__init__.py" if path.is_dir() else path
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(path)] if path.is_dir() else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec, so the package's relative imports resolve
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


@contextlib.contextmanager
def activated(model, adapters: list[tuple[Adapter, list[dict]]]):
    """Apply several adapters' units for one run; all are undone on exit, even after an error."""
    with contextlib.ExitStack() as stack:
        for adapter, units in adapters:
            stack.enter_context(adapter.activate(model, units))
        yield
