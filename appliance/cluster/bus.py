"""Connecting to NATS with the configured credentials and TLS; one sentence on failure."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import ssl
import stat
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from appliance.config import ClusterSecurity
from appliance.config.cluster import nats_url_problem, shown_url
from appliance.errors import ConfigError, SemtraceError

T = TypeVar("T")


def _not_nats_tls_eof(record: logging.LogRecord) -> bool:
    """asyncio's warning each time a server closes a TLS connection of nats-py (which
    upgrades a plain stream in place, so asyncio's stream protocol does not know it is TLS):
    harmless, but it was the line every cluster command over TLS ended with on stderr."""
    return not str(record.msg).startswith("returning true from eof_received()")


logging.getLogger("asyncio").addFilter(_not_nats_tls_eof)
log = logging.getLogger("semtrace.cluster")

INSTALL_HINT = "NATS support is an extra: pip install 'semtrace[nats]'."


def require_nats() -> Any:
    """The `nats` package, or one sentence saying how to install it."""
    try:
        import nats
    except ImportError:
        raise SemtraceError(INSTALL_HINT) from None
    return nats


def private_file(path: str | Path, what: str) -> Path:
    """`path`, checked readable by its owner only; ConfigError naming `what` otherwise."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except OSError:
        raise ConfigError(f"The NATS {what} {path} cannot be read.") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"The NATS {what} {path} must be readable by its owner only "
                          "(chmod 600).")
    return p


def tls_context(sec: ClusterSecurity) -> ssl.SSLContext | None:
    """A client TLS context when a CA is configured, else None (plain TCP)."""
    if not sec.tls_ca_file:
        return None
    try:
        ctx = ssl.create_default_context(cafile=sec.tls_ca_file)
        if sec.tls_cert_file:
            private_file(sec.tls_key_file or sec.tls_cert_file, "TLS key")
            ctx.load_cert_chain(sec.tls_cert_file, sec.tls_key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"The NATS TLS files cannot be loaded ({type(exc).__name__}).") \
            from None
    return ctx


def connect_options(sec: ClusterSecurity) -> dict[str, Any]:
    """nats-py `connect` keyword arguments for the configured authentication and TLS."""
    opts: dict[str, Any] = {}
    if sec.creds_file:
        opts["user_credentials"] = str(private_file(sec.creds_file, "credentials file"))
    if sec.nkey_seed_file:
        opts["nkeys_seed"] = str(private_file(sec.nkey_seed_file, "nkey seed file"))
    if sec.password_file and not sec.user:  # the password was left out unsaid before
        raise ConfigError("security.password_file needs security.user in cluster.toml (the "
                          "NATS user the password is for).")
    if sec.user:
        if not sec.password_file:
            raise ConfigError("security.user needs security.password_file in cluster.toml.")
        opts["user"] = sec.user
        opts["password"] = private_file(sec.password_file, "password file").read_text().strip()
    ctx = tls_context(sec)
    if ctx is not None:
        opts["tls"] = ctx
    return opts


def servers(url: str) -> list[str]:
    return [u.strip() for u in url.split(",") if u.strip()]


async def connect(url: str, sec: ClusterSecurity, *, name: str,
                  connect_timeout: float = 5.0, reconnect: bool = True,
                  on_error: Callable[[Exception], None] | None = None,
                  within: float | None = None,
                  callbacks: dict[str, Any] | None = None) -> Any:
    """An open nats-py client; SemtraceError with one sentence when NATS cannot be reached
    within `within` seconds (default: three connection attempts' time). `on_error` is shown
    each error the server reports on the connection (a permission it denies a publish,
    which nats-py reports nowhere else); `callbacks`: more of nats-py's (a node's
    disconnected_cb and reconnected_cb, `outage.py`)."""
    nats = require_nats()
    from nats.errors import Error as NatsError
    from nats.errors import NoServersError

    if why := nats_url_problem(url):  # before nats-py, which says only `Error`
        raise ConfigError(f"The NATS URL {shown_url(url)} {why}.")
    reported: list[Exception] = []  # what the server said while a first connection retried
    refused = asyncio.get_running_loop().create_future()  # set: credentials refused
    opts = connect_options(sec)
    tls_only = "tls" in opts or any(u.startswith("tls://") for u in servers(url))
    client, no_tls_error = _tls_only_client() if tls_only else (nats.NATS, None)

    async def _quiet(exc: Exception) -> None:  # nats-py prints every error by default
        if not attempt.done():
            reported.append(exc)
        elif no_tls_error and isinstance(exc, no_tls_error) and str(exc) not in said:
            said.add(str(exc))  # a reconnection's refusal: once for each server
            log.warning(f"{exc} This connection goes on trying its servers, over TLS only.",
                        extra={"event": "nats_no_tls"})
        if "authorization" in str(exc).lower() and not refused.done():
            refused.set_result(None)  # a reconnecting client would retry them until `within`
        if on_error is not None:
            on_error(exc)

    said: set[str] = set()
    if tls_only:
        await _require_tls(url, connect_timeout)  # before nats-py sends any credential
    # nats-py retries a first connection like a reconnection (forever with -1, and with 0
    # too): the wait is bounded here, then reconnections are unlimited for a node. Not by
    # wait_for, which waits for the cancelled attempt to end: nats-py took seconds more
    # (7.6 s for a 3 s bound, on a server that accepts and never speaks).
    nc = client()  # not nats.connect(): an attempt given up must close its socket
    attempt = asyncio.ensure_future(nc.connect(
        servers(url), name=name, connect_timeout=connect_timeout, reconnect_time_wait=1,
        allow_reconnect=reconnect, max_reconnect_attempts=-1 if reconnect else 1,
        error_cb=_quiet, **opts, **(callbacks or {})))
    try:
        await asyncio.wait({attempt, refused}, return_when=asyncio.FIRST_COMPLETED,
                           timeout=connect_timeout * 3 if within is None else within)
    finally:
        refused.cancel()
        if not attempt.done() or attempt.cancelled() or attempt.exception() is not None:
            _abandon(nc, attempt)  # given up (or this wait cancelled): not waited for
    try:
        if not attempt.done():
            raise TimeoutError
        attempt.result()
        return nc
    except (NoServersError, OSError, TimeoutError, NatsError) as exc:
        raise _failure(url, exc, reported, no_tls_error) from None


NO_SERVER_REMEDY = ("start nats-server there, or check `url` in cluster.toml and this host's "
                    "and the semtrace service's network to it")  # what to do, said with it


def _failure(url: str, exc: Exception, reported: list[Exception],
             no_tls_error: type[Exception] | None) -> SemtraceError:
    """The one sentence for a first connection that failed with `exc`, the server having
    said `reported` meanwhile (the server's own words, no secret in them: a client that
    reconnects, a gateway or a node once started, hears them only through error_cb, and
    then timed out)."""
    from nats.errors import Error as NatsError
    from nats.errors import NoServersError

    if no_tls_error and (tls := next((e for e in reported if isinstance(e, no_tls_error)),
                                     None)):
        return ConfigError(str(tls))  # a server that stopped requiring TLS meanwhile
    if any("authorization" in str(e).lower() for e in [exc, *reported]):
        return SemtraceError(f"The NATS server at {shown_url(url)} refused these credentials "
                             "(authorization violation); check [security] in cluster.toml.")
    if isinstance(exc, NatsError) and not isinstance(exc, NoServersError):
        return SemtraceError(f"NATS refused the connection ({type(exc).__name__}); check the "
                             "credentials in cluster.toml.")
    return SemtraceError(f"No NATS server answers at {shown_url(url)} ({NO_SERVER_REMEDY}).")


async def _require_tls(url: str, within: float) -> None:
    """ConfigError unless every server of `url` that answers requires TLS. Asked for TLS (a
    tls:// URL, or security.tls_ca_file), nats-py still speaks plain text, the credentials
    included, to a server that does not require it (it upgrades only when the server's
    INFO says tls_required): so the INFO is read here first, and nothing is sent."""
    for one in servers(url):
        parts = urlsplit(one)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port or 4222), within)
        except (OSError, TimeoutError):
            continue  # not answering: nats-py says so, or takes another server
        try:
            line = await asyncio.wait_for(reader.readline(), within)
        except (OSError, TimeoutError):
            line = b""
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if not line.startswith(b"INFO "):
            continue  # no NATS greeting (a hung server, not NATS): nats-py says so
        info: Any = {}
        with contextlib.suppress(ValueError):
            info = json.loads(line[5:])
        if not (isinstance(info, dict) and info.get("tls_required")):
            raise ConfigError(no_tls(one))


def no_tls(url: str) -> str:
    """The sentence refusing a server of `url` (one URL) that does not require TLS."""
    return (f"The NATS server at {shown_url(url)} does not require TLS, which this connection "
            "asks for (a tls:// URL or security.tls_ca_file): nothing was sent to it; enable "
            "TLS on the server (a tls block in nats-server.conf, without allow_non_tls), or "
            "use a nats:// URL without tls_ca_file.")


@functools.cache
def _tls_only_client() -> tuple[Any, type[Exception]]:
    """A nats-py client class that refuses, after the server's INFO and before any byte of
    its own, a server whose INFO does not say tls_required, and the error it refuses with.
    nats-py upgrades to TLS only when the INFO says so, on each reconnection too and with
    the servers an INFO's connect_urls named, and otherwise sends CONNECT, the credentials
    included, in clear. Refused, the server is as one that failed: the client tries the
    next one (without limit when reconnecting)."""
    import nats
    from nats.errors import Error as NatsError

    class NoTls(NatsError):
        pass

    class TlsOnly(nats.NATS):
        async def _process_info(self, info: dict[str, Any],
                                initial_connection: bool = False) -> None:
            # called with the INFO a server greets with, before nats-py would upgrade
            if initial_connection and not info.get("tls_required"):
                assert self._transport and self._current_server  # set before the INFO
                self._transport.close()  # only read from: the INFO
                uri = self._current_server.uri
                raise NoTls(no_tls(f"{uri.scheme}://{uri.hostname}:{uri.port or 4222}"))
            await super()._process_info(info, initial_connection)

    return TlsOnly, NoTls


_ABANDONED: set[asyncio.Future[Any]] = set()  # attempts given up, until they end


def _abandon(nc: Any, attempt: asyncio.Future[Any]) -> None:
    """Cancel a connection attempt (given up, or failed) without waiting for it; once it
    ended, its client is closed (the socket it opened, a connection it still made)."""
    def ended(done: asyncio.Future[Any]) -> None:
        _ABANDONED.discard(done)
        if not done.cancelled():
            done.exception()  # retrieved: an attempt given up fails unseen
        _ABANDONED.add(late := asyncio.ensure_future(_close_quietly(nc)))
        late.add_done_callback(_ABANDONED.discard)

    attempt.cancel()
    _ABANDONED.add(attempt)
    attempt.add_done_callback(ended)


async def _close_quietly(nc: Any) -> None:
    with contextlib.suppress(Exception):
        await nc.close()


PROBE_S = 1.0  # a server that answers no PING within this is closed on without a drain


async def close_within(nc: Any, within: float) -> None:
    """Drain `nc` and close it, within `within` seconds (closing itself aside). A server
    that does not answer (stopped, a frozen host) would hold nats-py's drain 30 s and then
    a flush, and a drain cancelled midway leaves a future nobody reads (printed at exit):
    the server is asked first (a PING), and one that does not answer within PROBE_S (or
    what is left of `within`) is closed on without a drain. With no time left (a gateway
    call that spent its budget waiting for an answer) it is closed at once: close sends
    what is still buffered, and a gateway's client has no subscription to drain."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    if nc.is_connected and within > 0:
        try:
            await nc.flush(timeout=min(within, PROBE_S))
        except Exception:  # no answer (or the connection dropped meanwhile): no drain
            pass
        else:
            draining = asyncio.ensure_future(nc.drain())
            draining.add_done_callback(_retrieved)
            await asyncio.wait({draining}, timeout=max(deadline - loop.time(), 0.001))
            if draining.done() and not draining.cancelled() and draining.exception() is None:
                return  # drained and closed
    await _close_quietly(nc)  # reconnecting or hung: closing also stops the reconnection


def _retrieved(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()


async def end_tasks(within: float = 5.0) -> None:
    """End every other task of the running loop before the loop is closed, `within` seconds
    at most: connection attempts given up first end and close their sockets, then the rest
    (a drain the server never answered, a client's reader) is cancelled. A task still
    pending when its loop closes is destroyed pending, which Python prints at exit ("Task
    was destroyed but it is pending!", "Exception ignored in: <coroutine ...>
    RuntimeError: Event loop is closed")."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within / 2
    while abandoned := [f for f in _ABANDONED if f.get_loop() is loop]:
        if not await _ended(abandoned, deadline):
            break
    me, deadline = asyncio.current_task(), loop.time() + within / 2
    while tasks := [t for t in asyncio.all_tasks() if t is not me]:
        for task in tasks:
            task.cancel()  # again each round: some catch one cancellation and go on
        if not await _ended(tasks, deadline):
            return


async def _ended(futures: Sequence[asyncio.Future[Any]], deadline: float) -> bool:
    """Wait for `futures` a while (half a second at most, not past `deadline`); whether
    there is time left."""
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        return False
    done, _ = await asyncio.wait(futures, timeout=min(left, 0.5))
    for fut in done:
        _retrieved(fut)
    return True


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` for a command that talks to NATS: what `main` leaves running (a
    connection attempt given up) ends, its socket closed, before the loop closes."""
    async def ending() -> T:
        try:
            return await main
        finally:
            await end_tasks()

    return asyncio.run(ending())


def node_name(configured: str) -> str:
    """The configured node name, else the host name."""
    return configured or os.uname().nodename
