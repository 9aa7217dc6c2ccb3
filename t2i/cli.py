"""Command line: `python -m t2i generate ...`, `grid ...`, `batch ...`, `train ...` and `eval ...`.

Every failure prints one clear line on stderr, exits non-zero, and writes no file.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from PIL import Image

from t2i.plugins import Plugin, PluginManager
from t2i.request import REQUEST_FIELDS, FieldSpec, GenerationRequest
from t2i.settings import Settings


def _generate(args) -> int:
    from t2i.generation.engine import Engine
    from t2i.recipes.labels import Labeller
    from t2i.recipes.infotext import write_atomically
    from t2i.request import RequestError

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png file; got {out.name!r}")
    settings = Settings()
    labeller = Labeller.from_settings(settings)  # the app's labels (T2I_WATERMARK, T2I_C2PA_*), checked before any work
    result = Engine(_engine_settings(args), plugins=args.plugins).generate(_request_from_flags(args))
    withheld = [item.notice for item in result.images if item.image is None]
    if withheld:  # the safety gate held an image back: refuse the whole run, write nothing
        raise RequestError(f"{withheld[0]}; no file written")
    paths = [out] if len(result.images) == 1 else [
        out.with_name(f"{out.stem}-{i + 1}{out.suffix}") for i in range(len(result.images))]
    # encode everything first, so a failure part-way leaves no partial set of files
    blobs = [labeller.png(item.image, item.parameters, title=path.name) for path, item in zip(paths, result.images)]
    for path, blob, item in zip(paths, blobs, result.images):
        write_atomically(path, blob)
        print(f"{path}  seed={item.seed}")
        if item.notice:  # e.g. a content warning: on stderr, so stdout stays the list of files
            print(f"{path.name}: {item.notice}", file=sys.stderr)
    return 0


def _request_from_flags(args) -> GenerationRequest:
    """The GenerationRequest the request fields' flags and the plugins' flags describe."""
    from t2i.web.uploads import load_image_file

    values = {name: tuple(value) if isinstance(value, list) else value for name, value in vars(args).items()
              if name in REQUEST_FIELDS}
    settings = Settings()
    for name, spec in REQUEST_FIELDS.items():  # image files (--init-image, --mask), decoded under the size caps
        if spec.type is Image.Image and values.get(name):
            values[name] = load_image_file(values[name], settings.max_upload_mb << 20, settings.max_pixels,
                                           what=name.replace("_", " "))
    return GenerationRequest(**values, plugin_units=_units_from_flags(args))


def _grid(args) -> int:
    from t2i.generation.engine import Engine
    from t2i.grid.axes import Axis
    from t2i.grid.plot import plan_plot, run_plot, save_plot
    from t2i.recipes.labels import Labeller

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png file; got {out.name!r}")
    labeller = Labeller.from_settings(Settings())
    axes = [Axis.from_spec(spec) if spec else None for spec in (args.x, args.y, args.z)]
    engine = Engine(_engine_settings(args), plugins=args.plugins)
    plot = plan_plot(engine, _request_from_flags(args), axes)  # every refusal comes before the first image
    run_plot(engine, plot, on_cell=lambda done, total: print(f"cell {done}/{total}", file=sys.stderr))
    cells = Path(args.cells) if args.cells else out.with_name(f"{out.stem}-cells")
    paths = save_plot(plot, out, cells, labeller)
    print(f"{paths[0]}  {plot.grids[0].width}x{sum(g.height for g in plot.grids)}, {len(plot.cells)} cells in "
          f"{cells}")
    return 0


def _engine_settings(args=None) -> Settings:
    """The app's settings, but the person at the command line owns the machine: LoRAs may be named by file path,
    and `--embeddings-dir` names the embeddings folder."""
    settings = dataclasses.replace(Settings(), lora_local_paths=True)
    if getattr(args, "embeddings_dir", ""):
        settings = dataclasses.replace(settings, embeddings_dir=Path(args.embeddings_dir).expanduser())
    return settings


def _flag_dest(plugin: Plugin) -> str:
    return f"plugin_flag_{plugin.name}"


def _units_from_flags(args) -> dict[str, list[dict]]:
    """The units each plugin's flag gave (e.g. `--lora ink:0.8`), by plugin name."""
    units = {plugin.name: [plugin.unit_from_cli(text) for text in getattr(args, _flag_dest(plugin))]
             for plugin in args.plugins.plugins.values() if plugin.cli_flag}
    return {name: plugin_units for name, plugin_units in units.items() if plugin_units}


def _evaluate(args) -> int:
    from t2i.eval.benchmark import run_benchmark

    run_benchmark(model=args.model, steps=args.steps, n_single=args.single, n_pairs=args.pairs,
                  speed_runs=args.speed_runs)
    return 0


def build_parser(plugins: PluginManager | None = None) -> argparse.ArgumentParser:
    """The command line; `generate` takes the flags that `plugins` declare (e.g. --lora, --control)."""
    parser = argparse.ArgumentParser(prog="python -m t2i", description="t2i text-to-image studio")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="make an image from a prompt")
    gen.add_argument("-o", "--output", required=True, help="PNG file to write")
    _add_request_flags(gen, plugins)
    gen.set_defaults(run=_generate, plugins=plugins)
    grid = sub.add_parser("grid", help="X/Y/Z plot: a labelled grid of images over up to three request fields")
    grid.add_argument("-o", "--output", required=True, help="grid PNG file to write")
    for axis in ("x", "y", "z"):
        grid.add_argument(f"--{axis}", default="", metavar="NAME:VALUES",
                          help=f"{axis.upper()} axis, e.g. 'cfg:3,5,7', 'seed:1-3', 'steps:10-30 (+10)', "
                               "'Prompt S/R:red,blue', 'sampler:Euler,DPM++ 2M'")
    grid.add_argument("--cells", default="", help="folder for each cell's own PNG (default: OUTPUT-cells/)")
    _add_request_flags(grid, plugins)
    grid.set_defaults(run=_grid, plugins=plugins)
    ev = sub.add_parser("eval", help="prompt-fidelity benchmark on the shapes world")
    ev.add_argument("--model", default="embedded")
    ev.add_argument("--steps", type=int, default=REQUEST_FIELDS["steps"].default,
                    help="sampling steps (default: a request's, like the guidance scale and sampler)")
    ev.add_argument("--single", type=int, default=200, help="number of single-object prompts")
    ev.add_argument("--pairs", type=int, default=100, help="number of two-object prompts")
    ev.add_argument("--speed-runs", type=int, default=7)
    ev.set_defaults(run=_evaluate)
    from t2i.batch.command import add_batch_parser  # light, like the trainer's: heavy imports when it runs
    from t2i.train.command import add_train_parser  # light: the trainer's heavy imports happen when it runs

    add_batch_parser(sub)
    add_train_parser(sub)
    return parser


def _add_request_flags(parser: argparse.ArgumentParser, plugins: PluginManager | None) -> None:
    """The request fields' flags and the plugins' flags (e.g. --lora), as `generate` and `grid` take them."""
    for spec in REQUEST_FIELDS.values():
        if spec.flag:
            parser.add_argument(spec.flag, **_flag_options(spec))
    parser.add_argument("--embeddings-dir", default="", metavar="DIR",
                        help="textual-inversion embeddings folder (default: T2I_EMBEDDINGS_DIR)")
    for plugin in plugins.plugins.values() if plugins else ():
        if plugin.cli_flag:
            parser.add_argument(plugin.cli_flag.flag, action="append", default=[], dest=_flag_dest(plugin),
                                metavar=plugin.cli_flag.metavar, help=plugin.cli_flag.help)


def _flag_options(spec: FieldSpec) -> dict:
    """argparse options for a request field's flag: its type, default and help, all from its declaration."""
    help_text = spec.help or spec.label
    if spec.choices:
        help_text += "; one of: " + ", ".join(spec.choices)
    if not spec.flag.startswith("-"):  # positional: required, so no default
        return {"help": help_text}
    options = {"dest": spec.name, "metavar": spec.flag.lstrip("-").replace("-", "_").upper()}
    if spec.type is tuple:
        return {**options, "action": "append", "default": [], "help": help_text + " (repeatable)"}
    if spec.type is Image.Image:
        return {**options, "metavar": "FILE", "default": None, "help": help_text}
    return {**options, "type": spec.type, "default": spec.default, "help": help_text}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        # plugins load only to generate: they declare its flags, and its engine runs them
        plugins = PluginManager.discover(_engine_settings()) if argv[:1] in (["generate"], ["grid"]) else None
        args = build_parser(plugins).parse_args(argv)
        return args.run(args)
    except (ValueError, OSError) as exc:  # RequestError is a ValueError; OSError covers unwritable output
        print(f"error: {exc}", file=sys.stderr)
        return 1
