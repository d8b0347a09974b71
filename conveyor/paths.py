"""Where things are: the engine's own schemas, and a project's config, mappings and master data."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def schemas_dir() -> Path:
    """The canonical JSON Schemas (``schemas/`` of the source tree, or a copy shipped in the
    wheel)."""
    shipped = PACKAGE_DIR / "_schemas"
    return shipped if shipped.is_dir() else REPO_DIR / "schemas"


def project_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The project directory: ``--project``, else ``CONVEYOR_PROJECT``, else the working
    directory."""
    chosen = explicit or os.environ.get("CONVEYOR_PROJECT") or os.getcwd()
    return Path(chosen).resolve()


def confined(base: Path, name: str) -> Path:
    """``base / name``, refusing names that escape ``base`` (``..``, absolute paths, links out)."""
    candidate = (base / name).resolve()
    root = base.resolve()
    if candidate != root and root not in candidate.parents:
        raise ValueError(f"path {name!r} escapes {root}")
    return candidate
