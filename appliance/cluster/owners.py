"""One owner per partition: claims in a JetStream key-value bucket, kept alive by heartbeats.

A node claims each partition it is told to own before consuming it. A claim
held by another node that is still alive (it refreshed its claim within
`owner_ttl_s`) stops the start with one sentence: two nodes consuming one
partition would split its tenants' conversations. The bucket's max age expires
the claims of a node that died; a node restarting under the same name (over the
same data dir) takes its own claims back at once. A node name belongs to one data
dir: a node started under the name of a live node on another data dir is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance import __version__
from appliance.cluster.buckets import open_bucket
from appliance.cluster.partition import OWNERS_BUCKET
from appliance.cluster.wire import check_version, read
from appliance.errors import SemtraceError

log = logging.getLogger("semtrace.cluster")
HELD_WITHIN_S = 0.5  # for `held`'s read of a claim


@dataclass(frozen=True)
class Claim:
    """Who owns a partition, as last written."""

    partition: int
    node: str
    since: float
    refreshed: float
    version: str | None = None  # the node's semtrace version (None: a node of an earlier build)
    data_dir: str | None = None  # the id of the node's data dir (None: an earlier build)
    lock: str | None = None  # the data dir's lock the node held (`DataDirLock.identity`)


def _key(partition: int) -> str:
    return f"p{partition}"


def owned_elsewhere(p: int, holder: str, age_s: float) -> str:
    """The sentence that refuses a partition a live node holds."""
    return (f"Partition {p} is owned by node '{holder}' (alive {age_s:.0f} s ago); stop that "
            "node, or wait for its claim to expire, before taking it.")


def unreadable_claim(p: int, exc: ValueError, ttl_s: float) -> str:
    """The sentence that refuses a partition whose claim this node cannot read."""
    return (f"Partition {p} has a claim in NATS this node cannot read ({unreadable_why(exc)}): "
            f"stop the node that wrote it, or wait for it to expire ({ttl_s:g} s after its "
            "last write), before taking the partition. Nothing was consumed.")


async def owners_bucket(js: Any, *, ttl_s: float, replicas: int, create: bool = True) -> Any:
    """The owners bucket, created on first use (BucketNotFoundError if not `create`)."""
    from nats.js.api import KeyValueConfig

    return await open_bucket(js, KeyValueConfig(
        bucket=OWNERS_BUCKET, history=1, ttl=ttl_s, replicas=replicas,
        description="semtrace partition owners"), create=create)


async def read_claims(kv: Any) -> dict[int, Claim]:
    """Every live claim this node can read, by partition."""
    return (await all_claims(kv))[0]


async def note_versions(kv: Any, me: str) -> None:
    """One warning at start when other live nodes run another semtrace version."""
    others = {c.node: c.version for c in (await read_claims(kv)).values()
              if c.node != me and c.version != __version__}
    if others:
        listed = ", ".join(f"{n} {v or 'an earlier build'}" for n, v in sorted(others.items()))
        log.warning(f"Other nodes run another semtrace version ({listed}; this node "
                    f"{__version__}): fine during a rolling upgrade, but partitions move "
                    "only between nodes of one version.",
                    extra={"event": "mixed_versions", "nodes": sorted(others)})


async def all_claims(kv: Any) -> tuple[dict[int, Claim], dict[int, str]]:
    """Every live claim this node can read, by partition, and the partitions whose claim
    it cannot read, with why (a sentence fragment: `unreadable_why`)."""
    from appliance.cluster.kv_read import bucket_entries

    claims: dict[int, Claim] = {}
    unreadable: dict[int, str] = {}
    for entry in await bucket_entries(kv):  # not kv.keys(): it raced to none (kv_read.py)
        with contextlib.suppress(Exception):  # not a partition's key
            p = int(entry.key[1:])
            value = entry.value
            try:
                claims[p] = claim_of(p, json.loads(value or b""))
            except ValueError as exc:
                unreadable[p] = unreadable_why(exc)
    return claims, unreadable


async def held(kv: Any, partition: int) -> bool | None:
    """Whether a node holds `partition`'s claim now: False when the bucket has none (never
    claimed, given up at a clean stop, or expired `owner_ttl_s` after its owner's last
    refresh); None when NATS did not say within HELD_WITHIN_S."""
    from nats.js.errors import KeyNotFoundError

    try:
        await asyncio.wait_for(kv.get(_key(partition)), HELD_WITHIN_S)
    except KeyNotFoundError:  # none, or deleted
        return False
    except Exception:  # noqa: BLE001 - timed out, or the connection dropped: not known
        return None
    return True


def unreadable_why(exc: ValueError) -> str:
    """Pure: why a claim cannot be read, as a fragment ("it is not JSON", "the claim on
    partition 1 is of wire version 2, ...")."""
    garbled = isinstance(exc, json.JSONDecodeError | UnicodeDecodeError)
    why = "it is not JSON" if garbled else str(exc).rstrip(".")
    return why[:1].lower() + why[1:]


async def refuse_unreadable(kv: Any, partitions: list[int], ttl_s: float) -> None:
    """SemtraceError (`unreadable_claim`) when one of `partitions` has a claim this node
    cannot read (`read_claims` leaves it out: it counts as none there)."""
    from nats.js.errors import KeyNotFoundError

    for p in partitions:
        try:
            value = (await kv.get(_key(p))).value
        except KeyNotFoundError:  # none, or deleted
            continue
        try:
            claim_of(p, json.loads(value or b""))
        except ValueError as exc:
            raise SemtraceError(unreadable_claim(p, exc, ttl_s)) from None


def claim_of(partition: int, value: Any) -> Claim:
    """Pure: a claim as a node of any version wrote it: fields this version does not know
    are ignored; ValueError when one it knows is missing or of another type, or when a
    later, incompatible version wrote it (`wire.py`)."""
    check_version(value, f"claim on partition {partition}")
    if isinstance(value, dict):  # the partition is the key's; an early build wrote no refresh
        value = {"refreshed": 0.0} | value | {"partition": partition}
    return read(Claim, value, f"claim on partition {partition}")


def name_in_use(claims: dict[int, Claim], me: str, data_dir: str) -> str | None:
    """The sentence that refuses a node whose name a live node on another data dir holds
    (a claim is alive until `owner_ttl_s` after its last refresh); None if it is free."""
    for claim in sorted(claims.values(), key=lambda c: -c.refreshed):
        if claim.node == me and claim.data_dir not in (None, data_dir):
            return _in_use(me, time.time() - claim.refreshed)
    return None


def _in_use(me: str, age_s: float) -> str:
    return (f"The node name '{me}' is in use by a node on another data dir (alive {age_s:.0f} s "
            "ago): give this node its own name (--node, `node` in cluster.toml), or stop that "
            "node, or wait for its claim to expire, before starting this one. Nothing was "
            "consumed.")


async def watch_copies(kv: Any, claims: dict[int, Claim], data_dir: str,
                       ttl_s: float, lock: str = "") -> None:
    """SemtraceError if another process of this data dir (`data_dir`: its id) runs: a copy
    of it (restored from a backup, say) or its original, which would consume into a store
    of its own and split its tenants' records.

    A claim carrying this data dir's id is either such a process's or that of this data
    dir's last run, killed before it released its claims: on one host the data dir's
    lock keeps a second serve of one path out before this check. The live one refreshes
    its claims every `ttl_s / 3`, so they are watched for up to twice that (a beat late
    under load is still seen); a dead run's never change (a start waits that long only
    after a crash, while its claims have not expired).

    `lock`: the identity of the data dir's lock this process holds (`DataDirLock.identity`).
    A claim written under that very lock is a dead run's (a live one would hold it), so a
    node killed and started again on its host takes its claims back at once; a copy's
    claims carry a lock of its own, and are watched."""
    mine = {p: c for p, c in claims.items()
            if data_dir and c.data_dir == data_dir and not (lock and c.lock == lock)}
    deadline = time.monotonic() + ttl_s * 2 / 3
    while mine and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = await read_claims(kv)
        for p, seen in list(mine.items()):
            claim = now.get(p)
            if claim is None or claim.data_dir != data_dir:
                del mine[p]  # released, expired or taken: not a live copy's
            elif claim.refreshed != seen.refreshed:
                raise SemtraceError(
                    f"A copy of this data dir runs as node '{claim.node}' (its original, or "
                    f"one restored from a backup; its claim on partition {p} was refreshed "
                    f"{max(0.0, time.time() - claim.refreshed):.0f} s ago): two copies of one "
                    "data dir would each store prompts of its tenants that the other lacks, "
                    "so stop that one before starting this one. Nothing was consumed.")


class Ownership:
    """This node's claims: taken at start, refreshed while running, released at stop.

    A refresh writes only over this process's own last write (compare-and-set on the
    revision): a node cut off from NATS for longer than `owner_ttl_s` may find its
    claim expired and taken by another node, and then gives the partition up
    (`on_lost`) instead of writing over the new owner's claim and consuming beside it.
    """

    def __init__(self, kv: Any, node: str, partitions: list[int], ttl_s: float, *,
                 on_lost: Callable[[int, str], None] | None = None,
                 data_dir: str = "", lock: str = "") -> None:
        """`data_dir`: the id of this node's data dir, which a live node of the same name
        on another data dir does not share (its start is refused). `lock`: the identity of
        the data dir's lock this process holds (`watch_copies`)."""
        self.kv = kv
        self.node = node
        self.data_dir = data_dir
        self.lock = lock
        self.partitions = partitions
        self.ttl_s = ttl_s
        self.lost: dict[int, str] = {}  # partition -> the node that holds it now
        self._on_lost = on_lost
        self._revisions: dict[int, int] = {}
        self._since = time.time()
        self._instance = secrets.token_hex(8)  # this process, apart from a restart of it
        self._task: asyncio.Task[None] | None = None

    def _value(self) -> bytes:
        value = {"node": self.node, "since": self._since, "refreshed": time.time(),
                 "instance": self._instance, "version": __version__}
        if self.data_dir:
            value["data_dir"] = self.data_dir
        if self.lock:
            value["lock"] = self.lock
        return json.dumps(value).encode()

    async def claim(self) -> None:
        """Claim every partition or none; SemtraceError naming the live owner otherwise."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        if self.data_dir and (clash := name_in_use(await read_claims(self.kv), self.node,
                                                   self.data_dir)):
            raise SemtraceError(clash)
        if self.data_dir:  # a copy of this data dir that started while this one loaded
            await watch_copies(self.kv, await read_claims(self.kv), self.data_dir, self.ttl_s,
                               self.lock)
        taken: list[int] = []
        for p in self.partitions:
            try:
                self._revisions[p] = await self.kv.create(_key(p), self._value())
            except KeyWrongLastSequenceError:
                try:
                    entry = await self.kv.get(_key(p))
                except KeyNotFoundError:  # deleted or expired meanwhile
                    self._revisions[p] = await self.kv.put(_key(p), self._value())
                    taken.append(p)
                    continue
                try:  # another node's claim, of any version (`wire.py`)
                    held = claim_of(p, json.loads(entry.value))
                except ValueError as exc:  # not JSON, or not a claim this node can read
                    await self._release(taken)
                    raise SemtraceError(unreadable_claim(p, exc, self.ttl_s)) from None
                holder, age = held.node, time.time() - held.refreshed
                if holder != self.node:
                    await self._release(taken)
                    raise SemtraceError(owned_elsewhere(p, holder, age)) from None
                if self.data_dir and held.data_dir not in (None, self.data_dir):
                    await self._release(taken)  # the same name, another data dir: alive
                    raise SemtraceError(_in_use(self.node, age)) from None
                self._revisions[p] = await self.kv.update(_key(p), self._value(),
                                                          last=entry.revision)
            taken.append(p)
        if self.data_dir and (clash := name_in_use(await read_claims(self.kv), self.node,
                                                   self.data_dir)):
            await self._release(taken)  # another data dir of this name started meanwhile
            raise SemtraceError(clash)
        self._task = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        failing = False  # said once until a refresh succeeds (it was a line a partition a beat)
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            for p in self.partitions:
                if p in self.lost:
                    continue
                try:
                    await self._refresh(p)
                except Exception as exc:  # NATS away for a moment: the next beat tries again
                    if not failing:
                        log.warning(
                            f"This node could not refresh its claim on partition {p} "
                            f"({type(exc).__name__}) and tries again every {self.ttl_s / 3:g} "
                            f"s; a claim not refreshed for {self.ttl_s:g} s (owner_ttl_s) "
                            "expires, and another node may then take the partition.",
                            extra={"event": "owner_heartbeat", "partition": p,
                                   "error": type(exc).__name__})
                    failing = True
                else:
                    failing = False

    async def _refresh(self, p: int) -> None:
        """Renew the claim on `p` if it is still this process's; else give `p` up."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        try:
            self._revisions[p] = await self.kv.update(_key(p), self._value(),
                                                      last=self._revisions.get(p))
            return
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self.kv.get(_key(p))
        except KeyNotFoundError:  # expired while NATS was away, and nobody took it
            self._revisions[p] = await self.kv.create(_key(p), self._value())
            return
        try:
            value = json.loads(entry.value)
            mine = isinstance(value, dict) and value.get("instance") == self._instance
            holder = str(claim_of(p, value).node) if not mine else self.node
        except ValueError:  # a claim this node cannot read (`wire.py`): another's all the same
            mine, holder = False, "?"
        if mine:  # our own write, its ack lost
            self._revisions[p] = await self.kv.update(_key(p), self._value(),
                                                      last=entry.revision)
            return
        self.lost[p] = holder
        who = (f"node '{holder}'" if holder != "?" else
               "a node whose claim this node cannot read")
        log.error(f"Partition {p} was claimed by {who} while this node could not "
                  "refresh its claim; this node stops consuming it (restart it without that "
                  "partition in --own, or stop the other node and restart this one).",
                  extra={"event": "partition_lost", "partition": p, "holder": holder})
        if self._on_lost is not None:
            self._on_lost(p, holder)

    async def _release(self, partitions: list[int]) -> None:
        for p in partitions:  # only a claim still as this process last wrote it
            revision = self._revisions.pop(p, None)
            if revision is None:  # never taken: another node's claim, left alone
                continue
            with contextlib.suppress(Exception):
                await self.kv.delete(_key(p), last=revision)

    async def release(self) -> None:
        """Give the partitions up (clean stop): another node may take them at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._release([p for p in self.partitions if p not in self.lost])
