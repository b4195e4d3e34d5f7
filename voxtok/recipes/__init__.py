"""Hydra entry points that the recipe stages call: `python -m voxtok.recipes.<stage> key=value ...`.

Every entry point reads its config from the repository's `configs/` tree and turns a
VoxTokError into a one-line message and exit status 2, like the `voxtok` CLI. Hydra composes the
config in struct mode, so an override of a key the tree lacks (`exp_dirr=...`) is an error;
the model, trainer and data blocks are then read strictly by the library (voxtok/config.py).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def recipe_main(config_name: str) -> Callable:
    """Decorator: run `fn(cfg)` as a Hydra app on `configs/<config_name>.yaml`.

    Hydra's working-directory change is disabled (paths in configs are relative to where the
    stage is run, as in a Kaldi recipe) and its own output goes under `hydra_dir` when set.
    """
    import hydra

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def checked(cfg):
            from voxtok.errors import VoxTokError

            try:
                return fn(cfg)
            except VoxTokError as err:
                print(f"error: {err}", file=sys.stderr)
                sys.exit(2)

        app = hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(checked)

        @functools.wraps(fn)
        def entry():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            return app()

        return entry

    return wrap
