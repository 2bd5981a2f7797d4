"""A JetStream key-value bucket of the cluster, looked up or created on first use, safe
when several nodes (or a node and a command such as `erase`) make it at the same moment.

On a fresh nats-server every node creates the buckets it needs (owners, erasures,
tenants) when it first uses them. Two creators that both found no bucket race: the server
refuses the later one's creation when the other's bucket came into being meanwhile
(`subjects overlap with an existing stream`, or `stream name already in use` when the
other node asked for it with other settings, e.g. another owner TTL or a build whose
description differs). That refusal means the bucket is there: it is looked up and used,
as if this node had come a moment later. A bounded number of tries, each a short wait
longer than the last; a refusal that persists (the bucket still absent: NATS refuses
this configuration) is raised as it came.

A bucket that has just come into being can be found before its stream answers on its
subjects: a put then fails (`no response from stream`), and an erasure request was not
sent. So a bucket is returned once its stream answers a probe that stores nothing (a
publish that names another stream, which the stream refuses): one round trip when the
bucket is long there.
"""

from __future__ import annotations

import asyncio
from typing import Any

TRIES = 6  # look-ups and creations, with waits of 0.05 s doubling (about 1.5 s in all)
PROBE_S = 1.0  # how long one probe waits for the stream's answer


async def open_bucket(js: Any, config: Any, *, create: bool = True) -> Any:
    """The key-value bucket `config.bucket` (a nats `KeyValueConfig`), created with that
    configuration when absent and `create` (else BucketNotFoundError); a creation refused
    because another node made the bucket meanwhile uses that node's bucket."""
    from nats.js.errors import BadRequestError, BucketNotFoundError

    refused: BadRequestError | None = None
    for attempt in range(TRIES):
        if attempt:
            await asyncio.sleep(0.05 * 2 ** (attempt - 1))
        try:
            return await _answering(js, await js.key_value(config.bucket), config.bucket)
        except BucketNotFoundError:
            if not create:
                raise
        try:
            return await _answering(js, await js.create_key_value(config), config.bucket)
        except BadRequestError as exc:  # made by another at the same moment: look again
            refused = exc
    assert refused is not None
    raise refused


async def _answering(js: Any, kv: Any, bucket: str) -> Any:
    """The new bucket `kv` once its stream answers on its subjects (a bounded wait); as it
    is when the probe fails otherwise (e.g. this user may not publish there: the caller's
    own put says so)."""
    from nats.errors import Error as NatsError
    from nats.js.errors import NoStreamResponseError

    for attempt in range(TRIES):
        if attempt:
            await asyncio.sleep(0.05 * 2 ** (attempt - 1))
        try:  # names another stream: the bucket's stream refuses it, nothing is stored
            await js.publish(f"$KV.{bucket}.semtrace-probe", b"", timeout=PROBE_S,
                             stream="semtrace-probe")
        except NoStreamResponseError:  # not answering yet
            continue
        except (NatsError, OSError):  # its refusal (it answers), or a failure to leave
            pass                      # to the caller's own put
        return kv
    return kv
