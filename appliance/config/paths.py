"""Where policies and the bundled model live: env, source tree or install prefix."""

from __future__ import annotations

import os
import sys
from pathlib import Path

POLICY_DIR_ENV = "SEMTRACE_POLICY_DIR"
MODEL_DIR_ENV = "SEMTRACE_MODEL_DIR"
# appliance/config/paths.py -> the source tree (its policies/ and models/), if any.
_REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def _share_dir(name: str) -> Path:
    repo = _REPO_ROOT / name
    if repo.is_dir():
        return repo
    return Path(sys.prefix) / "share" / "semtrace" / name


def policy_dir() -> Path:
    """Where policies live: $SEMTRACE_POLICY_DIR, the source tree, or the install prefix."""
    env = os.environ.get(POLICY_DIR_ENV)
    return Path(env) if env else _share_dir("policies")


def model_dir() -> Path:
    """Where the bundled model lives: $SEMTRACE_MODEL_DIR, the source tree, or the prefix."""
    env = os.environ.get(MODEL_DIR_ENV)
    return Path(env) if env else _share_dir("models")
