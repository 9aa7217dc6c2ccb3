"""t2i: a text-to-image studio on diffusers. The version is written here once; pyproject.toml reads it."""

__version__ = "0.1.0"
