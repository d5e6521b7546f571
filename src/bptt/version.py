"""The package version, in one module that imports nothing (checkpoints record it)."""

__version__ = "0.1.0"
