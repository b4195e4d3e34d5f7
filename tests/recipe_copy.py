"""A copy of egs/libritts in a temp dir (as a user starts a new recipe) and the environment to run it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "libritts"


def copy_recipe(tmp_path: Path) -> Path:
    """run.sh, path.sh, conf/ and utils/ copied to tmp_path/recipe, so tests never touch the repo's exp/ and data/."""
    work = tmp_path / "recipe"
    work.mkdir()
    for item in ("run.sh", "path.sh", "conf", "utils"):
        src = RECIPE / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    return work


def recipe_env() -> dict[str, str]:
    """This interpreter's environment first on PATH, progress lines instead of redrawn bars."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", VOXTOK_PROGRESS="0")
