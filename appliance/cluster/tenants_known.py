"""The tenants each node of a cluster knows, for `erase --all-tenants` on any node.

A user id is pseudonymised per tenant, so an erasure that names only the person has to
search every tenant; on a cluster a node's data dir knows only its own tenants (and those
its policies name). So every running node notes, in the JetStream key-value bucket
`semtrace_tenants` under its node name, the tenant names its store and policies know (at
start, each minute, and before a tenant new to it is stored: `tenants_note.py`), and
`erase --all-tenants` adds the tenants of every node's note to its own before it asks each
tenant's owner. Only tenant names go there (they are in the bus's subjects already): never
a user id or a pseudonym. A node that has not run since this version knows its tenants is
not in the bucket: `cluster_notes` finds it among the partitions' owners (the live claim,
else the last consumer), so that `erase --all-tenants` says its tenants were not searched.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from appliance.cluster.buckets import open_bucket
from appliance.cluster.bus import connect
from appliance.cluster.wire import check_version
from appliance.config import ClusterSettings

TENANTS_BUCKET = "semtrace_tenants"


@dataclass(frozen=True)
class Notes:
    """What the cluster's nodes noted: every tenant name, and the nodes that own partitions
    (a live claim, else the partition's last consumer) but noted nothing, with those
    partitions: the tenants only they know are unknown to any other node."""

    tenants: frozenset[str]
    unlisted: tuple[tuple[str, tuple[int, ...]], ...]  # (node, its partitions), by name
    # partitions whose consumer an earlier build made (it names no node), none claimed
    unnamed: tuple[int, ...] = ()
    # nodes whose note this version cannot read (corrupt, or a form it does not know)
    unreadable: tuple[str, ...] = ()


_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")  # what a KV key may hold


async def tenants_bucket(js: Any, *, replicas: int, create: bool = True) -> Any:
    """The bucket of node -> tenant names (BucketNotFoundError when absent and not `create`)."""
    from nats.js.api import KeyValueConfig

    return await open_bucket(js, KeyValueConfig(
        bucket=TENANTS_BUCKET, history=1, replicas=replicas,
        description="semtrace: the tenant names each node knows (erase --all-tenants)"),
        create=create)


def notable(node: str) -> bool:
    """Pure: whether a node of this name can note its tenants (a KV key holds the name)."""
    return bool(_KEY.match(node))


async def note_tenants(kv: Any, node: str, tenants: list[str]) -> bool:
    """Note this node's tenants; False when its name cannot be a key (nothing noted)."""
    if not notable(node):
        return False
    await kv.put(node, json.dumps(sorted(set(tenants))).encode())
    return True


def note_of(value: bytes) -> set[str] | None:
    """Pure: the tenant names of one node's note; None when this version cannot read it
    (not JSON, not a list of names: corrupt, or a form it does not know). A note is a list
    of names, or an object whose `tenants` is one: the form a later version that adds
    fields to the note writes (those fields are ignored here)."""
    try:
        listed = json.loads(value)
    except (ValueError, TypeError):  # not UTF-8 or not JSON
        return None
    if isinstance(listed, dict):
        try:
            check_version(listed, "tenants note")
        except ValueError:  # a later, incompatible version's
            return None
        listed = listed.get("tenants")
    if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
        return None
    return {t for t in listed if t}


def tenants_of(values: list[bytes]) -> set[str]:
    """Pure: the tenant names of the nodes' notes (a note this version cannot read is
    left out: `cluster_notes` names its node)."""
    return set().union(*(note_of(v) or set() for v in values))


def unlisted(owners: dict[int, str | None], noted: set[str],
             here: set[str]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Pure: the nodes that own a partition (`owners`: partition -> node) but have no note,
    with their partitions; the names this data dir consumed under (`here`) are left out."""
    found: dict[str, list[int]] = {}
    for p, node in sorted(owners.items()):
        if node and node not in noted and node not in here:
            found.setdefault(node, []).append(p)
    return tuple((node, tuple(ps)) for node, ps in sorted(found.items()))


async def cluster_tenants(settings: ClusterSettings) -> set[str]:
    """Every tenant a node of the cluster noted; SemtraceError when NATS does not answer."""
    return set((await cluster_notes(settings, here=set(), here_partitions=set())).tenants)


async def cluster_notes(settings: ClusterSettings, *, here: set[str],
                        here_partitions: set[int]) -> Notes:
    """Every tenant a node of the cluster noted, the owners of partitions that noted none
    (not those named in `here`), and the partitions an earlier build's node consumed last
    (not those in `here_partitions`); SemtraceError when NATS does not answer."""
    nc = await connect(settings.url, settings.security, name="semtrace-erase", reconnect=False)
    try:
        js = nc.jetstream()
        notes = await _notes(js, settings)
        owners, unnamed = await _owners(js, settings)
        waiting = await _waiting(js, settings)
        read = {node: note_of(value) for node, value in notes.items()}
        return Notes(frozenset(set().union(*(t for t in read.values() if t)) | waiting),
                     unlisted(owners, set(notes), here),
                     tuple(sorted(unnamed - here_partitions)),
                     tuple(sorted(n for n, t in read.items() if t is None and n not in here)))
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def _notes(js: Any, settings: ClusterSettings) -> dict[str, bytes]:
    """Each node's note, by node (an empty value is a note too: one this version cannot
    read)."""
    from nats.js.errors import BucketNotFoundError

    try:
        kv = await tenants_bucket(js, replicas=settings.replicas, create=False)
    except BucketNotFoundError:
        return {}
    from appliance.cluster.kv_read import bucket_entries

    # not a watch: its first pass raced to no note at all (kv_read.py); deleted or purged
    # keys are no note
    return {entry.key: entry.value or b"" for entry in await bucket_entries(kv)}


async def _waiting(js: Any, settings: ClusterSettings) -> set[str]:
    """The tenants with prompts waiting in the stream, which no node may have stored yet
    (its owner down or behind, or its note refused): their owner is asked too, and its
    tombstone refuses those prompts when it consumes them."""
    from nats.js.errors import NotFoundError

    from appliance.cluster.partition import part_subject, split_part_subject
    from appliance.cluster.stream import stream_subjects

    try:
        subjects = await stream_subjects(js, settings.stream, part_subject("*"))
    except NotFoundError:
        return set()
    return {split[1] for subject in subjects
            if (split := split_part_subject(subject)) is not None}


async def _owners(js: Any, settings: ClusterSettings) -> tuple[dict[int, str | None], set[int]]:
    """Each partition's owner: its live claim, else the node that consumed it last; and
    the partitions whose last consumer does not say its node (an earlier build's)."""
    from nats.js.errors import BucketNotFoundError, NotFoundError

    from appliance.cluster.owners import owners_bucket, read_claims
    from appliance.cluster.partition import consumer_name
    from appliance.cluster.stream import last_consumer

    try:
        claims = await read_claims(await owners_bucket(
            js, ttl_s=settings.owner_ttl_s, replicas=settings.replicas, create=False))
    except BucketNotFoundError:
        claims = {}
    owners: dict[int, str | None] = {}
    unnamed: set[int] = set()
    for p in range(settings.partitions):
        if p in claims:
            owners[p] = claims[p].node
            continue
        try:
            info = await js.consumer_info(settings.stream, consumer_name(settings.stream, p))
        except NotFoundError:
            owners[p] = None
            continue
        named = last_consumer(info.config.description)
        owners[p] = named.node if named else None
        if named is None:
            unnamed.add(p)
    return owners, unnamed
