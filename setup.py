"""Build hook: the wheel carries the canonical JSON Schemas.

The schemas live at the project root (``schemas/``) where integrators and editors find them; an
installed package has no project root, so ``build_py`` copies them into ``conveyor/_schemas``,
where ``conveyor.paths.schemas_dir()`` looks first. Everything else is in ``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithSchemas(build_py):  # type: ignore[misc]
    """``build_py`` that also copies ``schemas/*.json`` into the built ``conveyor/_schemas``."""

    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / "schemas"
        target = Path(self.build_lib) / "conveyor" / "_schemas"
        target.mkdir(parents=True, exist_ok=True)
        for schema in sorted(source.glob("*.json")):
            shutil.copy2(schema, target / schema.name)


setup(cmdclass={"build_py": BuildWithSchemas})
