"""The JetStream side of the bus: the stream, one consumer per partition, their lag,
and the checks that the server partitions as this node does.

The stream holds ingest requests (file storage, work queue: acknowledged messages
are deleted); each partition has one durable pull consumer, whoever owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from appliance.cluster import partition as part
from appliance.config import ClusterSettings
from appliance.errors import SemtraceError

STREAM_DESCRIPTION = "semtrace ingest, partitions={n}"


@dataclass(frozen=True)
class ConsumerLag:
    """One partition's consumer as JetStream reports it."""

    partition: int
    pending: int  # in the stream, not yet delivered
    ack_pending: int  # delivered, not yet acknowledged
    redelivered: int  # delivered more than once (since the consumer was created)

    @property
    def lag(self) -> int:
        return self.pending + self.ack_pending


def stream_config(settings: ClusterSettings, *, max_msg_size: int) -> Any:
    """The JetStream stream that holds ingest requests (file storage, work queue)."""
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig

    # no_ack: a request's reply subject is the gateway's, not JetStream's publish ack.
    return StreamConfig(name=settings.stream, subjects=[part.part_subject("*")],
                        description=STREAM_DESCRIPTION.format(n=settings.partitions),
                        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
                        num_replicas=settings.replicas, no_ack=True,
                        max_msg_size=max_msg_size)


CONSUMER_DESCRIPTION = "semtrace partition {p}, consumed by node {node}"
# written by `cluster reclaim` on a stopped node: the partition is that node's from then on
RECLAIMED_DESCRIPTION = "semtrace partition {p}, reclaimed by node {node}"
# before the node's name: the data dir that consumes (earlier builds leave it out)
DATA_DIR = ", data dir "
# before the data dir: the id of the start that made the consumer (earlier builds leave it
# out), which an export carries, so that the importing node sees whether the exporting one
# consumed the partition again since (`imported.py`)
START = ", start "


@dataclass(frozen=True)
class LastConsumer:
    """The node a partition's consumer names: the last to consume it, or to reclaim it."""

    node: str
    reclaimed: bool = False  # named by `cluster reclaim`, not yet consumed by that node
    data_dir: str | None = None  # the consuming data dir's id (None: an earlier build's)
    start: str | None = None  # the id of the node's start that made it (None: not known)


def last_consumer(description: str | None) -> LastConsumer | None:
    """The node that made a partition's consumer (None: an earlier build's consumer)."""
    for sep, reclaimed in ((", consumed by node ", False), (", reclaimed by node ", True)):
        head, found, node = (description or "").partition(sep)
        if found and node:
            head, has_id, data_dir = head.partition(DATA_DIR)
            _, has_start, start = head.partition(START)
            return LastConsumer(node, reclaimed, data_dir if has_id and data_dir else None,
                                start if has_start and start else None)
    return None


def consumer_config(settings: ClusterSettings, p: int, node: str = "", *,
                    reclaimed: bool = False, data_dir: str = "", start: str = "") -> Any:
    """Partition `p`'s durable consumer; its description names the node consuming it (or
    reclaiming it), the id of its data dir and of the node's start that made it, which the
    consumer keeps while no node runs (`last_consumer`)."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    named = RECLAIMED_DESCRIPTION if reclaimed else CONSUMER_DESCRIPTION
    if data_dir:
        named = named.replace("{p}, ", "{p}" + DATA_DIR + data_dir + ", ", 1)
        if start:  # before the data dir: an earlier build still reads the data dir and name
            named = named.replace("{p}, ", "{p}" + START + start + ", ", 1)
    return ConsumerConfig(durable_name=part.consumer_name(settings.stream, p),
                          filter_subject=part.part_subject(p), ack_policy=AckPolicy.EXPLICIT,
                          deliver_policy=DeliverPolicy.ALL, ack_wait=settings.ack_wait_s,
                          max_ack_pending=max(1000, settings.fetch_batch * 4),
                          description=named.format(p=p, node=node) if node
                          else f"semtrace partition {p}")


async def check_stream(js: Any, settings: ClusterSettings) -> bool:
    """Whether the stream exists; SemtraceError if it was made for another partition count."""
    from nats.js.errors import NotFoundError

    try:
        info = await js.stream_info(settings.stream)
    except NotFoundError:
        return False
    expected = STREAM_DESCRIPTION.format(n=settings.partitions)
    if info.config.description != expected:
        raise SemtraceError(
            f"The stream {settings.stream} was made for another partition count "
            f"({info.config.description!r}); every node must use the same --partitions.")
    return True


async def ensure_stream(js: Any, settings: ClusterSettings, *, max_msg_size: int) -> None:
    """Create the stream, or check that the existing one has this many partitions."""
    if not await check_stream(js, settings):
        await js.add_stream(stream_config(settings, max_msg_size=max_msg_size))


async def check_mapping(nc: Any, partitions: int, timeout: float = 2.0) -> None:
    """Check that the server maps ingest subjects to `partitions` partitions, as we hash."""
    tokens = [f"probe-{secrets.token_hex(4)}-{i}" for i in range(4)]
    seen: dict[str, int] = {}
    got = asyncio.Event()

    async def on_probe(msg: Any) -> None:
        split = part.split_part_subject(msg.subject.replace(part.PROBED_PREFIX,
                                                            part.PART_PREFIX, 1))
        if split is not None:
            seen[split[1]] = split[0]
            if len(seen) == len(tokens):
                got.set()

    sub = await nc.subscribe(f"{part.PROBED_PREFIX}.*.*", cb=on_probe)
    try:
        for token in tokens:
            await nc.publish(f"{part.PROBE_PREFIX}.{token}", b"")
        await nc.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(got.wait(), timeout)
    finally:
        await sub.unsubscribe()
    if any(seen.get(t) != part.partition_of(t, partitions) for t in tokens):
        raise SemtraceError(
            f"The NATS server does not map ingest subjects to {partitions} partitions: add the "
            f"mappings printed by `semtrace cluster nats-config --partitions {partitions}` to "
            "its configuration and reload it.")



async def consumer_lag(js: Any, settings: ClusterSettings,
                       partitions: list[int]) -> dict[int, ConsumerLag]:
    """Each partition's consumer state (a partition with no consumer: its stored messages)."""
    from nats.js.errors import NotFoundError

    out: dict[int, ConsumerLag] = {}
    for p in partitions:
        try:
            ci = await js.consumer_info(settings.stream, part.consumer_name(settings.stream, p))
            out[p] = ConsumerLag(p, int(ci.num_pending or 0), int(ci.num_ack_pending or 0),
                                 int(ci.num_redelivered or 0))
        except NotFoundError:
            waiting = await stream_subjects(js, settings.stream, part.part_subject(p))
            out[p] = ConsumerLag(p, sum(waiting.values()), 0, 0)
    return out


async def stream_subjects(js: Any, stream: str, subjects: str) -> dict[str, int]:
    """The stream's subjects matching `subjects`, with their message counts: every page of
    them. NATS answers at most 100,000 subjects a reply and says how many there are; the
    client's `stream_info` reads the first page only. NotFoundError when there is no
    stream. (A subject emptied between two pages may shift one of the next page into the
    one read before: only a subject whose messages were consumed meanwhile.)"""
    found: dict[str, int] = {}
    while True:
        reply = await js._api_request(  # the paged request `stream_info` does not make
            f"{js._prefix}.STREAM.INFO.{stream}",
            json.dumps({"subjects_filter": subjects, "offset": len(found)}).encode(),
            timeout=js._timeout)
        page = (reply.get("state") or {}).get("subjects") or {}
        before = len(found)
        found |= page
        # a server that does not page answers the first page again: nothing new
        if len(found) == before or len(found) >= int(reply.get("total") or 0):
            return found


