"""The package declaration (pyproject.toml) matches the tree, and the installed package is this checkout."""

from __future__ import annotations

import tomllib
from importlib.metadata import distribution, entry_points
from pathlib import Path

import t2i
from t2i.plugins import ENTRY_POINT_GROUP

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]  # package name -> folder


def _packages_in(name: str, folder: Path) -> set[str]:
    """Dotted names of the package at `folder` and every package folder below it."""
    return {".".join([name, *init.parent.relative_to(folder).parts]) for init in folder.rglob("__init__.py")}


def test_every_package_folder_is_declared():
    found = set().union(*(_packages_in(name, ROOT / folder) for name, folder in PACKAGE_DIRS.items()))
    declared = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert not found - declared, f"add to pyproject.toml's packages: {sorted(found - declared)}"
    assert not declared - found, f"remove from pyproject.toml's packages: {sorted(declared - found)}"


def test_every_builtin_plugin_folder_has_an_entry_point():
    folders = {path.name for path in (ROOT / "plugins").iterdir() if (path / "__init__.py").exists()}
    declared = PYPROJECT["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert declared == {name: f"t2i_plugins.{name}" for name in folders}


def test_the_installed_entry_points_are_the_declared_ones():
    installed = {point.name: point.value for point in entry_points(group=ENTRY_POINT_GROUP)
                 if point.dist is not None and point.dist.name == "t2i"}
    # a mismatch means the install is stale: run `pip install -e .` again
    assert installed == PYPROJECT["project"]["entry-points"][ENTRY_POINT_GROUP]


def test_the_version_is_written_once():
    assert distribution("t2i").version == t2i.__version__
    assert "version" in PYPROJECT["project"]["dynamic"]
