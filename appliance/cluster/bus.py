"""Connecting to NATS with the configured credentials and TLS; one sentence on failure."""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.config import ClusterSecurity
from appliance.errors import ConfigError, SemtraceError

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
                  within: float | None = None) -> Any:
    """An open nats-py client; SemtraceError with one sentence when NATS cannot be reached
    within `within` seconds (default: three connection attempts' time). `on_error` is shown
    each error the server reports on the connection (a permission it denies a publish,
    which nats-py reports nowhere else)."""
    nats = require_nats()
    from nats.errors import Error as NatsError
    from nats.errors import NoServersError

    async def _quiet(exc: Exception) -> None:  # nats-py prints every error by default
        if on_error is not None:
            on_error(exc)

    # nats-py retries a first connection like a reconnection (forever with -1, and with 0
    # too): the wait is bounded here, then reconnections are unlimited for a node. Not by
    # wait_for, which waits for the cancelled attempt to end: nats-py took seconds more
    # (7.6 s for a 3 s bound, on a server that accepts and never speaks).
    attempt = asyncio.ensure_future(nats.connect(
        servers(url), name=name, connect_timeout=connect_timeout, reconnect_time_wait=1,
        allow_reconnect=reconnect, max_reconnect_attempts=-1 if reconnect else 1,
        error_cb=_quiet, **connect_options(sec)))
    try:
        await asyncio.wait({attempt}, timeout=connect_timeout * 3 if within is None else within)
    finally:
        if not attempt.done():  # given up (or this wait cancelled): not waited for
            _abandon(attempt)
    try:
        if not attempt.done():
            raise TimeoutError
        return attempt.result()
    except (NoServersError, OSError, TimeoutError):
        raise SemtraceError(f"No NATS server answers at {url}.") from None
    except NatsError as exc:
        if "authorization" in str(exc).lower():  # the server's own words, no secret in them
            raise SemtraceError(f"The NATS server at {url} refused these credentials "
                                "(authorization violation); check [security] in "
                                "cluster.toml.") from None
        raise SemtraceError(f"NATS refused the connection ({type(exc).__name__}); check the "
                            "credentials in cluster.toml.") from None


_ABANDONED: set[asyncio.Future[Any]] = set()  # attempts given up, until they end


def _abandon(attempt: asyncio.Future[Any]) -> None:
    """Cancel a connection attempt without waiting for it; a connection it still makes
    is closed."""
    def ended(done: asyncio.Future[Any]) -> None:
        _ABANDONED.discard(done)
        if not done.cancelled() and done.exception() is None:
            _ABANDONED.add(late := asyncio.ensure_future(done.result().close()))
            late.add_done_callback(_ABANDONED.discard)

    attempt.cancel()
    _ABANDONED.add(attempt)
    attempt.add_done_callback(ended)


def node_name(configured: str) -> str:
    """The configured node name, else the host name."""
    return configured or os.uname().nodename
