"""The installed promptlab version, as the package metadata says (pyproject.toml is the one source).

A base-layer module, so that the run log and the reports can stamp rows and files with the
version without importing the package root (which imports everything else).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("promptlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
