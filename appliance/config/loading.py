"""Reading one policy file and validating it; errors name the file and the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from appliance.config.paths import policy_dir
from appliance.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


# Keys earlier versions accepted but never enforced: a policy naming one is refused
# with the reason, rather than seeming to promise something.
REMOVED_KEYS = {
    "sample_rate": "every prompt is embedded; sampling was never implemented",
    "checkpoint_every": "every audit write ends with a signed checkpoint",
    "vectors_days": "vectors are kept exactly as long as their prompts (prompts_days)",
    "threads_days": "thread summaries go with their prompts (prompts_days)",
}


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    last = str(first["loc"][-1]) if first["loc"] else ""
    if first["type"] == "extra_forbidden" and last in REMOVED_KEYS:
        return f"key '{key}' was removed (it was never enforced: {REMOVED_KEYS[last]})"
    msg = str(first["msg"]).removeprefix("Value error, ").rstrip(".")  # the caller ends it
    if not first["loc"] and first["type"] == "value_error":
        # A check across keys (a model validator): its message names the keys itself.
        return msg
    return f"key '{key}': {msg}"


def load_policy(name: str, model: type[M], *, directory: Path | None = None) -> M:
    """Load and validate `policies/<name>.toml`; ConfigError names the file and key."""
    path = (directory or policy_dir()) / f"{name}.toml"
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Policy file {path} is missing.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Policy file {path} is not valid TOML: {exc}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Policy file {path} is not UTF-8 text.") from None
    except IsADirectoryError:
        raise ConfigError(f"Policy file {path} is a folder, not a file.") from None
    except OSError as exc:
        raise ConfigError(f"Policy file {path} cannot be read ({exc.strerror}).") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"Policy file {path}: {_describe(exc)}.") from None


def load_optional_policy(name: str, model: type[M], *, directory: Path | None = None) -> M:
    """Like `load_policy`, but the defaults when the file is absent."""
    if not ((directory or policy_dir()) / f"{name}.toml").exists():
        return model()
    return load_policy(name, model, directory=directory)
