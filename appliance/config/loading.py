"""Reading one policy file and validating it; errors name the file and the key."""

from __future__ import annotations

import difflib
import tomllib
import typing
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


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the table holding `loc`'s last key may have: the settings model reached
    by the keys before it (a list's index or a dict's key passes through); [] if none."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
            continue
        # a list[...] or dict[str, ...] of settings: the index or the key leads to its item
        models = [a for a in typing.get_args(current)
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        if not models:
            return []
        current = models[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unknown_key(key: str, last: str, known: list[str]) -> str:
    """An unknown key: what the table knows that it may be a misspelling of, and what to do."""
    close = difflib.get_close_matches(last, known, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (f"key '{key}' is not a setting this file knows{hint}: correct its name or "
            "remove it")


def _describe(err: ValidationError, model: type[BaseModel]) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    last = str(first["loc"][-1]) if first["loc"] else ""
    if first["type"] == "extra_forbidden" and last in REMOVED_KEYS:
        return f"key '{key}' was removed (it was never enforced: {REMOVED_KEYS[last]})"
    if first["type"] == "extra_forbidden":
        return _unknown_key(key, last, _known_keys(model, tuple(first["loc"])))
    msg = str(first["msg"]).removeprefix("Value error, ").rstrip(".")  # the caller ends it
    if not first["loc"] and first["type"] == "value_error":
        # A check across keys (a model validator): its message names the keys itself.
        return msg
    return f"key '{key}': {msg}"


def _missing(path: Path, *, from_env: bool) -> str:
    """A policy file (or its whole folder) that is not there: which, and where the shipped
    defaults are to copy from."""
    import os

    from appliance.config.paths import POLICY_DIR_ENV, _share_dir

    folder, shipped = path.parent, _share_dir("policies")
    copy = (f"copy the shipped one from {shipped / path.name}" if shipped != folder
            and (shipped / path.name).is_file() else "reinstall to put the default back")
    if not folder.is_dir():
        named = (f" (${POLICY_DIR_ENV})" if from_env and os.environ.get(POLICY_DIR_ENV)
                 else "")
        return (f"The policy folder {folder}{named} does not exist: give the folder that "
                f"holds the policies, or copy the shipped ones from {shipped}.")
    return f"Policy file {path} is missing: {copy}."


def load_policy(name: str, model: type[M], *, directory: Path | None = None) -> M:
    """Load and validate `policies/<name>.toml`; ConfigError names the file and key."""
    path = (directory or policy_dir()) / f"{name}.toml"
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(_missing(path, from_env=directory is None)) from None
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
        raise ConfigError(f"Policy file {path}: {_describe(exc, model)}.") from None


def load_optional_policy(name: str, model: type[M], *, directory: Path | None = None) -> M:
    """Like `load_policy`, but the defaults when the file is absent."""
    if not ((directory or policy_dir()) / f"{name}.toml").exists():
        return model()
    return load_policy(name, model, directory=directory)
