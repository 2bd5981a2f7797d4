"""How long the bucket `semtrace_erasures` keeps a request, and the sweep that removes the
rest from NATS's disk.

A request (the user's pseudonym, the sealed reason, the asking node) is needed until the
owner has applied it and the asking command has read the answer. So the bucket keeps:

- a request not applied yet (pending, or failed and retried): until it is applied;
- an applied (or refused) request: until the command that asked has read the answer, and
  at most `WAIT_MAX_S` (a day, the longest `erase --wait`) after it was asked, when no
  command can be waiting for it any more.

Deleting a key in a KV bucket (delete, purge, an update over it) leaves the old bytes in
the stream's block files until the block goes, and a KV stream refuses the secure delete
of one message. So the sweep compacts instead: it notes the stream's last sequence, writes
every request it keeps again (compare-and-set, so nothing written since is overwritten),
then purges the stream below the noted sequence, which removes the older messages, the
superseded revisions too, from the files. The asking command sweeps once it has its
answers, and every running node sweeps with each new watch (`erasure_inbox.py`).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from appliance import constants
from appliance.cluster.erasures import decode
from appliance.cluster.partition import ERASURES_BUCKET

WAIT_MAX_S = constants.WAIT_MAX_S  # the longest `erase --wait`


def kept(value: bytes, *, now: float, seen: Collection[str] = ()) -> bool:
    """Pure: whether the bucket keeps this value; `seen`: request ids whose answer the
    asking command has read. A value this version does not read is kept (a newer node's)."""
    try:
        request, applied, _ = decode(value)
    except (ValueError, KeyError, TypeError):
        return True
    if applied is None:
        return True
    return request.request_id not in seen and now - request.requested_at < WAIT_MAX_S


async def sweep(js: Any, kv: Any, *, seen: Collection[str] = (),
                now: float | None = None) -> int:
    """Remove from NATS's disk every request the bucket no longer keeps, and the older
    revisions of those it keeps; the number of requests removed. Nothing is purged when
    there is nothing to remove."""
    from nats.js.errors import KeyWrongLastSequenceError

    now = time.time() if now is None else now
    stream = f"KV_{ERASURES_BUCKET}"
    state = (await js.stream_info(stream)).state
    last, live = state.last_seq, state.messages
    if not last or not live and state.first_seq > last:
        return 0
    from appliance.cluster.kv_read import bucket_entries

    # not a watch: its first pass raced to no entry at all, and every request, the
    # pending ones too, was then purged below (kv_read.py)
    entries = [e for e in await bucket_entries(kv)
               if e.revision <= last and e.operation is None and e.value]
    gone = [e for e in entries if not kept(e.value, now=now, seen=seen)]
    if not gone and live == last - state.first_seq + 1:  # nothing dropped, nothing superseded
        return 0
    for e in entries:
        if e not in gone:
            try:  # again above `last`; one updated since is above it already
                await kv.update(e.key, e.value, last=e.revision)
            except KeyWrongLastSequenceError:
                continue
    await js.purge_stream(stream, seq=last + 1)
    return len(gone)


async def forget_answers(settings: Any, seen: Collection[str]) -> int:
    """The asking command's sweep, once it has read the answers of `seen`; SemtraceError
    (or a NATS error) when NATS cannot be reached: the running nodes sweep later."""
    import contextlib

    from appliance.cluster.bus import connect
    from appliance.cluster.erasures import erasures_bucket

    nc = await connect(settings.url, settings.security, name="semtrace-erase", reconnect=False)
    try:
        js = nc.jetstream()
        return await sweep(js, await erasures_bucket(js, replicas=settings.replicas),
                           seen=seen)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
