"""An erasure asked for on any node of a cluster, applied by the node that owns the tenant.

A tenant's records are on one node, its partition's owner. `semtrace erase` run on
another node's data dir would find nothing there and say so, while the owner kept
every record of the user. So the command first asks NATS where the tenant lives
(`locate`): on this data dir, the erasure runs here as on a single host; elsewhere,
the request goes into the JetStream key-value bucket `semtrace_erasures` under
`<tenant>.<user pseudonym>` (the keyed pseudonym, the reason sealed under the
pseudonym key, the asking node and times: never the raw user id, and never the
reason in clear: a compliance officer's free text may name people) and the command
waits for the owner's answer in the same key (`forward`).

The owner (`ErasureInbox`, run by every `serve --nats`) reads the bucket when it
starts, after claiming its partitions and before consuming them, and applies every
request for its tenants not yet applied: a prompt of the user still waiting in
JetStream is then refused by the erasure's tombstone like on a single host. While it
runs it watches the bucket and applies new requests at once. The erasure, with its
tombstone, shredding and signed audit entry, is the owner's own (`erase_pseudonym`);
its outcome is written back into the key, which the asking command reports. A request
stays in the bucket until applied, so an owner that is down applies it when it comes
back, and a node that takes the partition over applies it before consuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from appliance.cluster.bus import connect
from appliance.cluster.partition import ERASURES_BUCKET, consumer_name, partition_of
from appliance.config import ClusterSettings

log = logging.getLogger("semtrace.cluster")
POLL_S = 0.3


@dataclass(frozen=True)
class ErasureRequest:
    """An erasure one node asks the owner of `tenant` to apply."""

    tenant: str
    user: str  # the keyed pseudonym
    reason: str  # sealed (`Keyring.seal_for_cluster`, bound to `key`): free text
    request_id: str
    requested_on: str  # the node (data dir) the command ran on
    requested_at: float
    pseudonyms: str  # the asking keyring's pseudonym fingerprint: the owner must match it
    tag: str = ""  # Keyring.erasure_tag of `signed()`: made by a node holding the key

    @property
    def key(self) -> str:
        return f"{self.tenant}.{self.user}"

    def signed(self) -> bytes:
        """The bytes the tag covers: every field but the tag."""
        fields = {k: v for k, v in asdict(self).items() if k != "tag"}
        return json.dumps(fields, sort_keys=True).encode()


@dataclass(frozen=True)
class Applied:
    """What the owner did with a request (`refused`: a sentence when it could not apply it)."""

    node: str
    held: bool = False
    buckets: int = 0
    records: int = 0
    completed_at: str | None = None
    unattributable_buckets: int = 0
    pseudonyms_changed_at: str | None = None
    refused: str | None = None


@dataclass(frozen=True)
class Home:
    """Where a tenant lives: its partition, the node that owns it, whether that is here."""

    tenant: str
    partition: int
    owner: str | None  # the live claim's node, else the partition's last consumer
    live: bool  # the owner holds a live claim (it runs)
    here: bool  # this data dir is the owner


def home_of(tenant: str, partitions: int, *, claimed_by: str | None, last_consumer: str | None,
            consumed_here: dict[int, str]) -> Home:
    """Pure: the tenant's home from the live claim, the partition's last consumer and the
    partitions this data dir consumed (under which node name)."""
    p = partition_of(tenant, partitions)
    owner = claimed_by or last_consumer
    mine = consumed_here.get(p)
    return Home(tenant, p, owner, claimed_by is not None,
                mine is not None and (owner is None or owner == mine))


def encode(request: ErasureRequest, applied: Applied | None = None) -> bytes:
    return json.dumps({"v": 1, "request": asdict(request),
                       "applied": None if applied is None else asdict(applied)}).encode()


def decode(value: bytes) -> tuple[ErasureRequest, Applied | None]:
    """ValueError (or KeyError, TypeError) on a value this version does not read."""
    obj = json.loads(value)
    applied = obj.get("applied")
    return ErasureRequest(**obj["request"]), None if applied is None else Applied(**applied)


async def erasures_bucket(js: Any, *, replicas: int) -> Any:
    """The bucket of erasure requests, created on first use (no expiry: a request waits for
    an owner that is down; one value per key)."""
    from nats.js.errors import BucketNotFoundError

    try:
        return await js.key_value(ERASURES_BUCKET)
    except BucketNotFoundError:
        from nats.js.api import KeyValueConfig

        return await js.create_key_value(KeyValueConfig(
            bucket=ERASURES_BUCKET, history=1, replicas=replicas,
            description="semtrace erasure requests: tenant, user pseudonym, outcome"))


async def locate(settings: ClusterSettings, tenants: list[str],
                 consumed_here: dict[int, str]) -> list[Home]:
    """Ask NATS which node owns each tenant now; SemtraceError if NATS does not answer (or
    the `nats` extra is not installed)."""
    nc = await connect(settings.url, settings.security, name="semtrace-erase", reconnect=False)
    from nats.js.errors import BucketNotFoundError, NotFoundError

    from appliance.cluster.owners import owners_bucket, read_claims
    from appliance.cluster.stream import last_consumer

    try:
        js = nc.jetstream()
        try:
            claims = await read_claims(await owners_bucket(
                js, ttl_s=settings.owner_ttl_s, replicas=settings.replicas, create=False))
        except BucketNotFoundError:
            claims = {}
        last: dict[int, str | None] = {}
        for p in sorted({partition_of(t, settings.partitions) for t in tenants}):
            try:
                info = await js.consumer_info(settings.stream,
                                              consumer_name(settings.stream, p))
                named = last_consumer(info.config.description)  # or the reclaiming node
                last[p] = named.node if named else None
            except NotFoundError:
                last[p] = None
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
    homes = []
    for t in tenants:
        p = partition_of(t, settings.partitions)
        claim = claims.get(p)
        homes.append(home_of(t, settings.partitions, claimed_by=claim.node if claim else None,
                             last_consumer=last[p], consumed_here=consumed_here))
    return homes


async def forward(settings: ClusterSettings, request: ErasureRequest, *, wait_s: float,
                  on_sent: Callable[[], None] = lambda: None) -> Applied | None:
    """Put the request in the bucket and wait up to `wait_s` for the owner's outcome; None
    when it has not come (the request stays: the owner applies it when it can)."""
    from nats.js.errors import KeyNotFoundError

    nc = await connect(settings.url, settings.security, name="semtrace-erase", reconnect=False)
    try:
        kv = await erasures_bucket(nc.jetstream(), replicas=settings.replicas)
        await kv.put(request.key, encode(request))
        on_sent()
        deadline = time.monotonic() + wait_s
        while True:
            with contextlib.suppress(KeyNotFoundError, ValueError, KeyError, TypeError):
                asked, applied = decode((await kv.get(request.key)).value)
                # a later request of the same erasure (run again meanwhile) covers this one
                if applied is not None and asked.requested_at >= request.requested_at:
                    return applied
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(POLL_S)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


Apply = Callable[[ErasureRequest], Awaitable[Applied]]


class ErasureInbox:
    """The owner's side: applies the requests for the partitions it owns, first those that
    waited (`start`, before the node consumes), then each new one as it comes."""

    def __init__(self, js: Any, *, replicas: int, partitions: int,
                 owns: Callable[[int], bool], apply: Apply) -> None:
        self.js, self.replicas, self.partitions = js, replicas, partitions
        self.owns, self.apply = owns, apply
        self.applied = 0
        self._kv: Any = None
        self._watcher: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Apply every waiting request of this node's tenants, then follow new ones."""
        self._kv = await erasures_bucket(self.js, replicas=self.replicas)
        self._watcher = await self._kv.watchall()  # the last value of each key, then updates
        while (entry := await self._watcher.updates(timeout=30)) is not None:
            await self._handle(entry)
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()

    async def _follow(self) -> None:
        async for entry in self._watcher:
            if entry is None:
                continue
            try:
                await self._handle(entry)
            except Exception:  # NATS away, a full disk: the request stays, asked again later
                log.exception("an erasure request could not be applied", extra={
                    "event": "erasure_request_failed"})

    async def _handle(self, entry: Any) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        if entry.operation is not None or not entry.value:  # a delete or purge marker
            return
        try:
            request, applied = decode(entry.value)
        except (ValueError, KeyError, TypeError):
            return
        if applied is not None or not self.owns(partition_of(request.tenant, self.partitions)):
            return
        outcome = await self.apply(request)
        self.applied += 1
        log.info("erasure applied", extra={
            "event": "erasure_applied", "tenant": request.tenant, "records": outcome.records,
            "requested_on": request.requested_on, "refused": outcome.refused is not None})
        # over this request only: a newer one put meanwhile is applied when it comes
        with contextlib.suppress(KeyWrongLastSequenceError):
            await self._kv.update(entry.key, encode(request, outcome), last=entry.revision)
