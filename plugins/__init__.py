"""t2i's built-in plugins. This folder installs as the `t2i_plugins` package (see pyproject.toml), and each
plugin registers through the `t2i.plugins` entry-point group like any installed plugin."""
