"""An erasure asked for on any node of a cluster, applied by the node that owns the tenant.

A tenant's records are on one node, its partition's owner. `semtrace erase` run on
another node's data dir would find nothing there and say so, while the owner kept
every record of the user. So the command first asks NATS where the tenant lives
(`locate.py`): on this data dir, the erasure runs here as on a single host; elsewhere,
the request goes into the JetStream key-value bucket `semtrace_erasures` under
`<tenant>.<user pseudonym>` (the keyed pseudonym, the reason sealed under the
pseudonym key, the asking node and times: never the raw user id, and never the
reason in clear: a compliance officer's free text may name people) and the command
waits for the owner's answer in the same key (`forward`).

The owner (`ErasureInbox`, `erasure_inbox.py`, run by every `serve --nats`) reads the
bucket when it starts, after claiming its partitions and before consuming them, and
applies every request for its tenants not yet applied: a prompt of the user still waiting
in JetStream is then refused by the erasure's tombstone like on a single host. While it
runs it watches the bucket and applies new requests at once, and retries one it could not
apply (`Failed` in the key meanwhile). The erasure, with its tombstone, shredding and
signed audit entry, is the owner's own (`erase_pseudonym`); its outcome is written back
into the key, which the asking command reports. A request stays in the bucket until
applied, so an owner that is down applies it when it comes back, and a node that takes
the partition over applies it before consuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from appliance.cluster.buckets import open_bucket
from appliance.cluster.bus import connect
from appliance.cluster.partition import ERASURES_BUCKET
from appliance.cluster.wire import WIRE_VERSION, check_version, known_fields, read
from appliance.config import ClusterSettings
from appliance.errors import SemtraceError

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
    # the fields a later version added, as it sent them (a JSON object, "" for none): this
    # version ignores them, but the tag covers them and the owner's answer keeps them
    unknown: str = ""

    @property
    def key(self) -> str:
        return f"{self.tenant}.{self.user}"

    def wire(self) -> dict[str, Any]:
        """The request as sent: its fields, with those a later version added."""
        fields = {k: v for k, v in asdict(self).items() if k != "unknown"}
        return fields | (json.loads(self.unknown) if self.unknown else {})

    def signed(self) -> bytes:
        """The bytes the tag covers: every field sent but the tag (a field a later version
        adds must be signed, and sent, only when it says something: an earlier node's
        request lacks it)."""
        fields = {k: v for k, v in self.wire().items() if k != "tag"}
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
class Failed:
    """The owner tried to apply a request and could not (its store raised): it tries again
    in `retry_in_s` while it runs (None: at its next start), and at its next start."""

    node: str
    attempts: int
    error: str  # a short fixed phrase (`failure_of`): never the exception's free text
    at: float
    retry_in_s: float | None = None


@dataclass(frozen=True)
class Unreached:
    """NATS failed the asking command: `sent` False, it did not take the request (a
    permission it denies, no JetStream, the server gone before the request went out), so
    the owner never sees it; True, the request went out: `confirmed`, NATS said it took it
    (then stopped answering while the command waited: the request waits there), else NATS
    never said so (its acknowledgement did not come), so it may or may not hold it and the
    owner may apply it."""

    why: str  # a sentence fragment: fixed phrases and the exception's type, nothing of the user
    sent: bool
    confirmed: bool = True


@dataclass(frozen=True)
class Superseded:
    """An earlier request of the same erasure, not applied, that a new one replaced in its
    key (the bucket keeps one value a key): its failure is said and audited, not lost."""

    request_id: str
    requested_on: str
    requested_at: float
    failed: Failed | None  # the owner's last failed attempt; None: it had not tried yet


@dataclass(frozen=True)
class Unreadable:
    """The key was rewritten after this command's put (the owner answered, or a node asked
    again) by a later, incompatible version (`"v"` above this node's, `wire.py`): what it
    says cannot be read here."""

    version: int


Answer = Applied | Failed | Unreached | Unreadable | None  # None: pending (not applied within
# the wait)


def later_version(value: bytes) -> int | None:
    """Pure: the wire version of a value written by a later, incompatible version; None for
    one this version reads (or that is not JSON: `decode` says why)."""
    try:
        obj = json.loads(value)
    except ValueError:
        return None
    v = obj.get("v") if isinstance(obj, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) and v > WIRE_VERSION else None


# what SQLite or the OS say in these cases: fixed phrases with nothing of the request in them
_KNOWN = ("database or disk is full", "database is locked", "disk I/O error",
          "attempt to write a readonly database", "unable to open database file")


def failure_of(exc: BaseException) -> str:
    """Pure: a short sentence fragment naming what went wrong, safe for NATS and logs."""
    import os

    text = str(exc)
    known = next((k for k in _KNOWN if k in text), None)
    if known:
        return known
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return type(exc).__name__



def encode(request: ErasureRequest, applied: Applied | None = None,
           failed: Failed | None = None) -> bytes:
    return json.dumps({"v": WIRE_VERSION, "request": request.wire(),
                       "applied": None if applied is None else asdict(applied),
                       "failed": None if failed is None else asdict(failed)}).encode()


def decode(value: bytes) -> tuple[ErasureRequest, Applied | None, Failed | None]:
    """The request in a key and the owner's outcome. A field this version does not know
    (a later version's, on a bus shared during a rolling upgrade) is ignored; ValueError,
    one sentence, when a field it knows is missing or of another type, or when a later,
    incompatible version wrote it (its `v`: `wire.py`)."""
    obj = json.loads(value)
    if not isinstance(obj, dict):
        raise ValueError("The erasure request's value is not a JSON object.")
    check_version(obj, "erasure request")
    known, unknown = known_fields(ErasureRequest, obj.get("request"), "erasure request",
                                  local=("unknown",))
    request = ErasureRequest(**known, unknown=json.dumps(unknown, sort_keys=True)
                             if unknown else "")
    applied, failed = obj.get("applied"), obj.get("failed")
    return (request, None if applied is None else read(Applied, applied, "erasure's outcome"),
            None if failed is None else read(Failed, failed, "erasure's failure"))


async def erasures_bucket(js: Any, *, replicas: int) -> Any:
    """The bucket of erasure requests, created on first use (no expiry: a request waits for
    an owner that is down; one value per key)."""
    from nats.js.api import KeyValueConfig

    return await open_bucket(js, KeyValueConfig(
        bucket=ERASURES_BUCKET, history=1, replicas=replicas,
        description="semtrace erasure requests: tenant, user pseudonym, outcome"))


async def forward(settings: ClusterSettings, request: ErasureRequest, *, wait_s: float,
                  on_sent: Callable[[], None] = lambda: None,
                  ) -> tuple[Answer, Superseded | None]:
    """Put the request in the bucket and wait up to `wait_s` for the owner's outcome: None
    when it has not come, `Failed` when the owner's last attempt failed (the request stays:
    the owner applies it when it can), `Unreached` when NATS failed this command (never
    raised: the caller says it with what else it did), `Unreadable` when a later version
    rewrote the key (the owner answered in a wire version this node cannot read); with the
    earlier request of the same erasure this one replaced, if that was not applied."""
    denied: list[str] = []  # what the server said it refused on this connection

    def refused(exc: Exception) -> None:  # nats-py lower-cases the server's words
        if PERMISSION_DENIED in str(exc).lower():
            denied.append(str(exc).lower())

    try:
        nc = await connect(settings.url, settings.security, name="semtrace-erase",
                           reconnect=False, on_error=refused)
    except SemtraceError as exc:  # NATS went away since `locate`
        return Unreached(str(exc).rstrip("."), sent=False), None
    try:
        return await _put_and_wait(nc, settings, request, wait_s, on_sent,
                                   lambda: any(f'"{_subject(request)}"'.lower() in d
                                               for d in denied))
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


PERMISSION_DENIED = "permissions violation for publish to"  # nats-server's words


def _subject(request: ErasureRequest) -> str:
    return f"$KV.{ERASURES_BUCKET}.{request.key}"


def not_taken(tenant: str, exc: BaseException) -> str:
    return (f"NATS did not take the erasure request for {tenant} ({type(exc).__name__}): "
            f"check that this node's NATS user may publish to $KV.{ERASURES_BUCKET}.> "
            "(docs/scale-out.md, Security on the bus)")


def refused_put(exc: BaseException, denied: bool) -> bool:
    """Pure: whether a failed put is known not to have stored the request: the server
    denied the publish, no stream listens on its subject, or JetStream answered with an
    error. Any other failure (its acknowledgement did not come: a timeout, the connection
    lost) leaves it unknown: the request may be in the bucket."""
    from nats.errors import NoRespondersError
    from nats.js.errors import APIError

    return denied or isinstance(exc, NoRespondersError | APIError)


async def _put_and_wait(nc: Any, settings: ClusterSettings, request: ErasureRequest,
                        wait_s: float, on_sent: Callable[[], None],
                        denied: Callable[[], bool]) -> tuple[Answer, Superseded | None]:
    from nats.errors import Error as NatsError
    from nats.js.errors import KeyNotFoundError

    try:
        kv = await erasures_bucket(nc.jetstream(), replicas=settings.replicas)
        earlier = await _earlier(kv, request)
    except (NatsError, OSError) as exc:  # nothing was published
        return Unreached(not_taken(request.tenant, exc), sent=False), None
    unconfirmed: str | None = None  # why NATS's acknowledgement of the put did not come
    try:
        await kv.put(request.key, encode(request))
    except (NatsError, OSError) as exc:  # a permission the server denies: a timeout
        if refused_put(exc, denied()):
            return Unreached(not_taken(request.tenant, exc), sent=False), None
        unconfirmed = f"NATS did not confirm that it took the request ({type(exc).__name__})"
    on_sent()
    deadline = time.monotonic() + wait_s
    failed: Failed | None = None
    while True:
        try:
            with contextlib.suppress(KeyNotFoundError, ValueError, KeyError, TypeError):
                value = (await kv.get(request.key)).value
                if (later := later_version(value)) is not None:  # written after this put
                    return Unreadable(later), earlier
                asked, applied, failure = decode(value)
                # a later request of the same erasure (run again meanwhile) covers this one
                if asked.requested_at >= request.requested_at:
                    unconfirmed = None  # it is in the bucket: NATS took it
                    if applied is not None:
                        return applied, earlier
                    failed = failure or failed
                    if failed is not None and failed.retry_in_s is None:
                        return failed, earlier  # the owner stopped on it until it starts
        except (NatsError, OSError) as exc:  # NATS went away while this command waited
            if unconfirmed is not None:
                return Unreached(f"{unconfirmed}, then stopped answering "
                                 f"({type(exc).__name__})", sent=True, confirmed=False), earlier
            return Unreached(f"NATS stopped answering ({type(exc).__name__})",
                             sent=True), earlier
        if time.monotonic() >= deadline:
            if unconfirmed is not None:  # never seen in the bucket: it may still be there
                return Unreached(f"{unconfirmed}, and it was not seen in the bucket within "
                                 f"{wait_s:g} s", sent=True, confirmed=False), earlier
            return failed, earlier
        await asyncio.sleep(POLL_S)


async def _earlier(kv: Any, request: ErasureRequest) -> Superseded | None:
    """The request of the same erasure the key holds, if not applied (a new put replaces
    it); None when there is none, or it cannot be read (the put then says why)."""
    from nats.errors import Error as NatsError

    try:
        current, applied, failed = decode((await kv.get(request.key)).value)
    except (NatsError, OSError, ValueError, KeyError, TypeError):  # none (KeyNotFound), or
        return None                                                # unreadable: the put tells
    if applied is not None or current.request_id == request.request_id:
        return None
    return Superseded(current.request_id, current.requested_on, current.requested_at, failed)
