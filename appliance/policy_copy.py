"""The retention policy a backup keeps beside its copy of the store, with no raw user id.

A legal hold may name its user by `user_id`, a raw id in the policy file. The backup's
copy of `retention.toml` names each such user by pseudonym instead (the one the store's
pseudonym key gives it, which survives `keys rotate`), so a backup holds no raw user id
outside its encrypted databases. A hold's reason that names its user or an e-mail address
is written as the reports state it (withheld). What the copy decides is the same: the same
buckets held, the same reasons in the reports; `same_retention` compares two policies so.

The copy is the operator's file edited in place (`toml_spans.py`): only those values change,
and a comment that names a held user (by the raw id) or an e-mail address is withheld
too; the rest of the comments and the layout are kept. The edit is kept only when the copy
reads back as exactly the intended policy; otherwise the copy is written from the parsed
file (TOML has no standard writer here) and its comments are not kept (its header says so).
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from appliance.config import RetentionSettings
from appliance.config.retention import EMAIL
from appliance.keys import Keyring

_BARE = re.compile(r"[A-Za-z0-9_-]+")
HEADER = ("# The retention policy in use when this backup was taken, written by `semtrace "
          "backup`\n# with each legal hold by pseudonym (so that it holds no raw user id); "
          "its comments\n# were not kept.\n")
KEPT = ("# The retention policy in use when this backup was taken, written by `semtrace "
        "backup`\n# with each legal hold by pseudonym (so that it holds no raw user id); "
        "its comments\n# and layout are kept, but for those naming a held user or an "
        "e-mail address.\n")
WITHHELD_COMMENT = "# (withheld by `semtrace backup`: it names a held user or an e-mail address)"


def by_pseudonym(text: str, keyring: Keyring) -> tuple[str, list[int]] | None:
    """Pure but for the keyring: `retention.toml`'s text with each hold by `user_id` written
    by pseudonym, and those holds' positions (from 1); None when no hold names a user id or
    the file does not load (copied as it is: a restore refuses it by its own sentence)."""
    try:
        data = tomllib.loads(text)
        settings = RetentionSettings.model_validate(data)
    except ValueError:
        return None
    changed = [i for i, h in enumerate(settings.legal_holds) if h.user_id is not None]
    if not changed:
        return None
    holds = []
    for raw, hold in zip(data["legal_holds"], settings.legal_holds, strict=True):
        if hold.user_id is None:
            holds.append(raw)
            continue
        new = {k: v for k, v in raw.items() if k != "user_id"}
        new["pseudonym"] = keyring.pseudonym(hold.tenant, hold.user_id)
        if "reason" in new:
            new["reason"] = hold.stated_reason
        holds.append(new)
    intended = data | {"legal_holds": holds}
    positions = [i + 1 for i in changed]
    ids = [h.user_id for h in settings.legal_holds if h.user_id is not None]
    edited = in_place(text, data["legal_holds"], holds, ids)
    if edited is not None and _reads_as(edited, intended):
        return KEPT + edited, positions
    return HEADER + dumps(intended), positions


def in_place(text: str, raw: list[dict[str, Any]], holds: list[dict[str, Any]],
             ids: list[str]) -> str | None:
    """Pure: `text` with each hold's `user_id = ...` of `raw` written as `holds` has it
    (`pseudonym = ...`), each reason `holds` changed replaced, and each comment naming one
    of `ids` or an e-mail address withheld; None when the values are not found one for
    one (the caller checks what the text reads as, in any case)."""
    from appliance.toml_spans import spans, values

    try:
        found = spans(text)
    except ValueError:
        return None
    keyed = values(text, found)
    edits: list[tuple[int, int, str]] = []
    for key, new_key in (("user_id", "pseudonym"), ("reason", "reason")):
        at = [v for v in keyed if v.key == key]
        which = [i for i, h in enumerate(raw) if key in h]
        if len(at) != len(which):
            return None
        for value, i in zip(at, which, strict=True):
            if key == "user_id":
                edits.append((value.key_start, value.span.end,
                              f"{new_key} = {_value(holds[i][new_key])}"))
            elif holds[i][key] != raw[i][key]:
                edits.append((value.span.start, value.span.end, _value(holds[i][key])))
    edits += [(c.start, c.end, WITHHELD_COMMENT) for c in found
              if c.comment and _names(text[c.start:c.end], ids)]
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _names(comment: str, ids: list[str]) -> bool:
    """Whether a comment holds an e-mail address or one of the held users' raw ids (one of
    3 characters or more anywhere, a shorter one as a word), case aside."""
    low = comment.lower()
    return EMAIL.search(comment) is not None or any(
        (u.strip().lower() in low) if len(u.strip()) >= 3 else
        re.search(rf"(?<![0-9a-z_]){re.escape(u.strip().lower())}(?![0-9a-z_])", low)
        is not None for u in ids if u.strip())


def _reads_as(text: str, intended: dict[str, Any]) -> bool:
    try:
        return tomllib.loads(text) == intended
    except ValueError:
        return False


def same_retention(saved: str, current: str, keyring: Keyring) -> bool:
    """Whether two retention policies decide the same: periods and schedule equal, the same
    holds in the same order (the same tenant and user, by user id or pseudonym alike, and
    the same reason as the reports state it). False when either does not load."""
    try:
        a, b = (RetentionSettings.model_validate(tomllib.loads(t)) for t in (saved, current))
    except ValueError:
        return False

    def decided(s: RetentionSettings) -> dict[str, Any]:
        from appliance.retention import held_user

        return s.model_dump(exclude={"legal_holds"}) | {"legal_holds": [
            (h.tenant, held_user(h, keyring), h.stated_reason) for h in s.legal_holds]}

    return decided(a) == decided(b)


def dumps(data: dict[str, Any]) -> str:
    """Pure: TOML for a parsed document of strings, numbers, booleans, lists (of those or
    of tables, written inline) and tables; `tomllib.loads(dumps(d)) == d`."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += _table([k], v)
    return "\n".join(lines) + "\n"


def _table(path: list[str], table: dict[str, Any]) -> list[str]:
    lines = ["", f"[{'.'.join(_key(p) for p in path)}]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            lines += _table([*path, k], v)
    return lines


def _key(key: str) -> str:
    return key if _BARE.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):  # TOML's basic string: JSON's escapes, and DEL escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return f"[{', '.join(_value(v) for v in value)}]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")
