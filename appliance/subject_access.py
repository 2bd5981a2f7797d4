"""A data subject's right of access (GDPR art. 15): every record held about one user of one
tenant, by thread, with the originals the vault keeps when the compliance key is opened.

Reads through `query.get_thread` (what `threads show` reads) and `Store.reveal` (what
`semtrace reveal` reads); writes one new file, mode 0600, and nothing else: no temp file,
and a file left half-written by an error is removed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.errors import InputError
from appliance.keys import RevealOpener
from appliance.query import ThreadFilter, count_threads, get_thread, list_threads
from appliance.records import Record, Thread, jsonable
from appliance.store import Store

FORMAT = "semtrace.subject_access.v1"
Progress = Callable[[int, int], None]  # (threads done, threads in all)


@dataclass(frozen=True)
class AccessExport:
    """What an access request found: the user's threads with their turns, and per record
    the originals (None: not asked for, or none kept for that record)."""

    tenant: str
    user: str  # pseudonym, as the store and `threads list` name the user
    threads: tuple[Thread, ...]
    originals: dict[int, list[tuple[str, str]] | None]
    revealed: bool  # whether the originals were asked for (the compliance key was opened)
    unattributable_buckets: int  # written under an earlier pseudonym key: not searched

    @property
    def records(self) -> int:
        return sum(len(t.records) for t in self.threads)


def _silent(done: int, total: int) -> None:
    return None


def collect(store: Store, tenant: str, user: str, *, opener: RevealOpener | None = None,
            progress: Progress = _silent) -> AccessExport:
    """Every thread of pseudonym `user` in `tenant`, in time order, each with its turns;
    with `opener`, each record's originals from the vault."""
    total = count_threads(store, ThreadFilter(tenant=tenant, user=user))
    heads = list_threads(store, ThreadFilter(tenant=tenant, user=user), sort="first",
                         descending=False, limit=max(total, 1))
    threads: list[Thread] = []
    originals: dict[int, list[tuple[str, str]] | None] = {}
    progress(0, total)
    for i, head in enumerate(heads, 1):
        thread = get_thread(store, head.thread_id)
        if thread is not None:
            # a thread is one user's; kept to theirs all the same, so that nothing of
            # another user could ever reach this file
            own = tuple(r for r in thread.records if r.tenant == tenant and r.user == user)
            threads.append(replace(thread, records=own, turns=len(own)))
            for r in own:
                originals[r.record_id] = store.reveal(r.record_id, opener) \
                    if opener is not None else None
        progress(i, total)
    earlier, _ = store.earlier_pseudonym_buckets(tenant)
    return AccessExport(tenant=tenant, user=user, threads=tuple(threads), originals=originals,
                        revealed=opener is not None, unattributable_buckets=earlier)


def _record(r: Record, originals: list[tuple[str, str]] | None,
            revealed: bool) -> dict[str, Any]:
    row = {k: v for k, v in jsonable(r).items() if k not in ("tenant", "user")}
    if revealed:
        row["originals"] = None if originals is None else [
            {"placeholder": p, "original": v} for p, v in originals]
    return row


def as_document(export: AccessExport, *, reason: str, now: datetime | None = None
                ) -> dict[str, Any]:
    """The export as the file holds it (JSON): what was searched, then each thread."""
    return {
        "format": FORMAT,
        "tenant": export.tenant,
        "user": export.user,
        "made_at": (now or datetime.now(UTC)).isoformat(),
        "reason": reason,
        "threads_count": len(export.threads),
        "records_count": export.records,
        "originals_included": export.revealed,
        "unattributable_buckets": export.unattributable_buckets,
        "threads": [{
            **{k: v for k, v in jsonable(t).items() if k not in ("records", "tenant", "user")},
            "records": [_record(r, export.originals.get(r.record_id), export.revealed)
                        for r in t.records],
        } for t in export.threads],
    }


def refuse_existing(out: Path) -> None:
    """An output file that exists already is never overwritten (nor followed, as a link)."""
    if out.exists() or out.is_symlink():
        raise InputError(f"{out} already exists; it was not overwritten and nothing was "
                         "exported.")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent} is not a folder; nothing was exported.")


def write(out: Path, document: dict[str, Any]) -> None:
    """Write `document` to the new file `out`, mode 0600 from its creation; removed again
    if the write fails."""
    refuse_existing(out)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise InputError(f"{out} already exists; it was not overwritten and nothing was "
                         "exported.") from None
    except OSError as exc:
        raise InputError(f"{out} cannot be written ({exc.strerror}); nothing was "
                         "exported.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, ensure_ascii=False, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        out.unlink(missing_ok=True)
        raise
