"""Run one benchmark by name: ``python -m bench validate --quick``."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main() -> None:
    """Dispatch to ``bench/<name>.py`` with the remaining arguments."""
    here = Path(__file__).parent
    names = sorted(
        p.stem for p in here.glob("*.py") if not p.stem.startswith("_") and p.stem != "common"
    )
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        print(f"usage: python -m bench <{'|'.join(names)}> [--quick]", file=sys.stderr)
        sys.exit(2)
    name = sys.argv.pop(1)
    sys.argv[0] = str(here / f"{name}.py")
    runpy.run_path(sys.argv[0], run_name="__main__")


main()
