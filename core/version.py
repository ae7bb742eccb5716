"""The package version (one place, read by the package and its built-in plugins)."""

__version__ = "0.1.0"
