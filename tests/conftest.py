"""Shared fixtures: real components, loaded once per session; data dirs in tmp_path."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import pytest

# Nothing in the suite may reach the network: Presidio's tldextract is pointed at
# no URL, hubs are offline, and any socket to a non-local address fails the test.
os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
os.environ["HF_HUB_OFFLINE"] = "1"
# LiteLLM fetches its model cost map when imported unless told to use its own copy; the
# first test module to import it (tests/test_bus_key.py) did not say so.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

SHARED_BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) else ""
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"test tried to open a network connection to {host}")
    return _real_connect(self, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point every per-user location at the test's tmp dir."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TLDEXTRACT_CACHE", str(tmp_path / "tld"))
    for var in ("SEMTRACE_DATA_DIR", "SEMTRACE_PASSPHRASE_FILE", "SEMTRACE_KEY_FILE",
                "CREDENTIALS_DIRECTORY", "SEMTRACE_QUERY_SOCKET"):
        monkeypatch.delenv(var, raising=False)


# A test runs within one UTC day, clear of the service's daily job: the privacy ledger,
# "today's release" and the release cache are per UTC day (`privacy.Ledger.day`), and
# `semtrace serve` makes each tenant's releases at 00:05 (release_cron). A test that made
# today's release and read it back after 00:00 UTC found none (a new release, on a new
# day's budget), and a service running at 00:05 made releases the test did not expect.
# Tests run with the real date (`stats` and `serve` read the system clock), so one that
# would start in the last BEFORE_MIDNIGHT of a UTC day, or the first AFTER_MIDNIGHT of
# one, waits for that to pass (at most once a run: 22 minutes); so does a test module, before
# its own fixtures (a module's `server`) start.
BEFORE_MIDNIGHT = timedelta(minutes=15)
AFTER_MIDNIGHT = timedelta(minutes=7)


def wait_clear_of_midnight(now: datetime) -> float:
    """Seconds to wait at `now` (UTC) for the UTC day to hold a test whole (0: none)."""
    since = now - now.replace(hour=0, minute=0, second=0, microsecond=0)
    if since < AFTER_MIDNIGHT:
        return (AFTER_MIDNIGHT - since).total_seconds()
    if since > timedelta(days=1) - BEFORE_MIDNIGHT:
        return (timedelta(days=1) + AFTER_MIDNIGHT - since).total_seconds()
    return 0.0


def _wait_for_a_whole_day() -> None:
    wait = wait_clear_of_midnight(datetime.now(UTC))
    if wait:
        print(f"\ntests: waiting {wait:.0f} s, until {AFTER_MIDNIGHT} past 00:00 UTC "
              "(tests/conftest.py, BEFORE_MIDNIGHT)", file=sys.__stderr__, flush=True)
        time.sleep(wait)


@pytest.fixture(scope="module", autouse=True)
def _module_clear_of_utc_midnight() -> None:
    _wait_for_a_whole_day()


@pytest.fixture(autouse=True)
def _clear_of_utc_midnight() -> None:
    _wait_for_a_whole_day()


@pytest.fixture(autouse=True)
def _semtrace_logger_restored() -> Iterator[None]:
    """A command run in process (`serve`) points the `semtrace` logger at its stderr and
    stops propagation: later tests' caplog saw none of its records, and it wrote to a
    closed capture. Each test starts and ends with the logger as it found it."""
    log = logging.getLogger("semtrace")
    saved = (log.handlers[:], log.level, log.propagate)
    yield
    log.handlers[:], log.propagate = saved[0], saved[2]
    log.setLevel(saved[1])


@pytest.fixture(autouse=True)
def _shared_folders_kept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The shared temp folder (/tmp) and the folder holding pytest's base temp (/tmp itself
    under `--basetemp /tmp/x`) keep their modes. One test closed the folder above the base
    temp: /tmp went 0700 and every later test that runs a client as another user was
    refused by the file system (Permission denied), on this run and on the host's others.
    A test that changes one errors here, naming the folder, and the mode is put back.
    pytest's per-user root (pytest-of-<user>) is not watched: every session on the host
    shares it, and tests open it for a while to let another uid through."""
    folders = {Path(tempfile.gettempdir()).resolve()}
    above = tmp_path_factory.getbasetemp().parent
    if above.name != f"pytest-of-{getpass.getuser()}":
        folders.add(above)
    before = {f: f.stat().st_mode for f in folders}
    yield
    changed = {f: (m, f.stat().st_mode) for f, m in before.items() if f.stat().st_mode != m}
    for f, (mode, _) in changed.items():
        os.chmod(f, stat.S_IMODE(mode))
    if changed:
        pytest.fail("; ".join(f"the test changed {f} from {stat.filemode(a)} to "
                              f"{stat.filemode(b)} (put back)" for f, (a, b) in changed.items()),
                    pytrace=False)


@pytest.fixture(scope="session")
def policies():  # type: ignore[no-untyped-def]
    from appliance.config import load_policies

    return load_policies()


@pytest.fixture(scope="session")
def embedder(policies):  # type: ignore[no-untyped-def]
    """The real llama.cpp embedder with the bundled model (loaded once)."""
    from appliance.embed import LlamaEmbedder

    return LlamaEmbedder(policies.correlation.embedding)


@pytest.fixture(scope="session")
def redactor(policies, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The real Presidio redactor (loaded once)."""
    from appliance.redact import Redactor

    return Redactor(policies.redaction, cache_dir=tmp_path_factory.mktemp("tldcache"))


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.touch(mode=0o600)
    path.write_text("correct horse battery staple\n")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def runtime(data_dir: Path, passphrase_file: Path, policies):  # type: ignore[no-untyped-def]
    """An initialised, opened data dir."""
    from appliance.keys import read_passphrase_file
    from appliance.runtime import init_data_dir, open_runtime

    cred = read_passphrase_file(passphrase_file)
    init_data_dir(data_dir, cred)
    rt = open_runtime(data_dir, cred, policies=policies)
    yield rt
    rt.close()


def real_pipeline(runtime: Any, embedder: Any, redactor: Any) -> Any:
    """The real pipeline (Presidio, llama.cpp, linker, SQLCipher, usearch) on `runtime`'s
    store, with this `redactor` (a test's own settings)."""
    from appliance.index import VectorIndex
    from appliance.link import make_linker
    from appliance.pipeline import Pipeline

    return Pipeline(store=runtime.store, index=VectorIndex(embedder.dims),
                    keyring=runtime.keyring, redactor=redactor, embedder=embedder,
                    linker=make_linker(runtime.policies.correlation),
                    policies=runtime.policies)


@pytest.fixture
def pipeline(runtime, embedder, redactor):  # type: ignore[no-untyped-def]
    """The real pipeline (Presidio, llama.cpp, linker, SQLCipher, usearch)."""
    return real_pipeline(runtime, embedder, redactor)


T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


def make_prompt(text: str, *, user: str = "alice", tenant: str = "acme", minutes: float = 0,
                request_id: str | None = None, session_id: str | None = None, **kw: object):  # type: ignore[no-untyped-def]
    from appliance.records import Prompt

    return Prompt(request_id=request_id or f"r-{user}-{minutes}-{abs(hash(text)) % 10**8}",
                  tenant=tenant, user_id=user, ts=T0 + timedelta(minutes=minutes), text=text,
                  session_id=session_id, **kw)  # type: ignore[arg-type]


@contextmanager
def running_service(pipeline: Any, sock: Path, *, policies: Any = None,
                    query_socket: Path | None = None) -> Iterator[Any]:
    """The real service on `pipeline` (ingest socket `sock`, `policies` default the
    pipeline's), on an event loop of its own thread; drained on leaving."""
    from appliance.service import Service

    svc = Service(pipeline, policies or pipeline.policies, socket_path=sock,
                  query_socket_path=query_socket)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(svc.start(), loop).result(60)
    try:
        yield svc
    finally:
        asyncio.run_coroutine_threadsafe(svc.drain(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


@contextmanager
def serving(pipeline: Any, roles: dict[str, Any], sockets: Path,
            query_socket: Path | None = None) -> Iterator[Path]:
    """The real service on `pipeline`, these roles added to its access policy; yields its
    query socket (`query_socket`, default `sockets`/query.sock; ingest at `sockets`/s.sock)."""
    policies = pipeline.policies.model_copy(update={
        "access": pipeline.policies.access.model_copy(
            update={"roles": {**pipeline.policies.access.roles, **roles}})})
    qsock = query_socket or sockets / "query.sock"
    with running_service(pipeline, sockets / "s.sock", policies=policies, query_socket=qsock):
        yield qsock


class NatsTap:
    """Every message published on `subject` while it runs, handed to `on_message` (which a
    tap overrides), from a NATS connection on an event loop of its own thread."""

    def __init__(self, url: str, subject: str) -> None:
        self.url, self.subject = url, subject
        self._loop = asyncio.new_event_loop()

    def on_message(self, msg: Any) -> None:
        raise NotImplementedError

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _sub(self) -> None:
        import nats

        self._nc = await nats.connect(self.url)

        async def cb(msg: Any) -> None:
            self.on_message(msg)

        await self._nc.subscribe(self.subject, cb=cb)
        await self._nc.flush()

    def open(self) -> None:
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self._run(self._sub())

    def flush(self) -> None:
        """Until the server has passed on what it had."""
        self._run(self._nc.flush())

    def close(self) -> None:
        self._run(self._nc.close())
        self._loop.call_soon_threadsafe(self._loop.stop)

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def init_store(tmp: Path, *, compliance: bool = True) -> tuple[list[str], Path, Path]:
    """`semtrace init` of tmp/data (with a compliance key unless told not to): the CLI
    arguments that open it (--data-dir, --passphrase-file) and the master and compliance
    passphrase files (0600)."""
    from test_spine import run_cli

    pw, cpw = tmp / "pw", tmp / "cpw"
    for path, text in ((pw, "operator pass phrase one"), (cpw, "compliance pass phrase two")):
        path.touch(mode=0o600)
        path.write_text(text + "\n")
    args = ["--data-dir", str(tmp / "data"), "--passphrase-file", str(pw)]
    extra = ["--compliance-passphrase-file", str(cpw)] if compliance else []
    assert run_cli("init", *args, *extra).returncode == 0
    return args, pw, cpw


def write_stream(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w") as fh:
        for i, row in enumerate(rows):
            fh.write(json.dumps({"index": i, **row}) + "\n")
    return path


def scan_for(root: Path, canaries: list[str]) -> list[tuple[Path, str]]:
    """Every (file, canary) where the canary's bytes appear (raw, lower-case, UTF-16)."""
    hits = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for c in canaries:
            forms = {c.encode(), c.lower().encode(), c.encode("utf-16-le"),
                     c.lower().encode("utf-16-le")}
            if any(f in data for f in forms):
                hits.append((path, c))
    return hits


def ingest_and_read_back(tmp: Path, prompts: list[tuple[str, str]], *,
                         user_prefix: str) -> tuple[Path, dict[str, str], str]:
    """`prompts` (request id, text) sent through the socket of a `semtrace serve` on a fresh
    data dir in `tmp`, one user each, then read back decrypted: the data dir, the stored
    text by request id, and every row of every table followed by the service's log."""
    from test_service import Server, at

    from appliance.client import Client
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    pw = tmp / "pw"
    pw.touch(mode=0o600)
    pw.write_text("read-back test passphrase\n")
    srv = Server(tmp, pw).start()
    try:
        with Client(srv.sock) as c:
            replies = [c.ingest(tenant="acme", user_id=f"{user_prefix}-{i}", request_id=rid,
                                text=text, ts=at(i)) for i, (rid, text) in enumerate(prompts)]
    finally:
        assert srv.stop() == 0
    assert all(r["ok"] for r in replies), replies
    rt = open_runtime(srv.data, read_passphrase_file(pw))
    try:
        stored = {r.request_id: r.text or "" for r in rt.store.records("1=1", ())}
        db = rt.store.db
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = "\n".join(repr(row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"'))
    finally:
        rt.close()
    return srv.data, stored, dump + "\n" + srv.log.read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A `semtrace serve` subprocess with the shipped policies on a fresh data dir, one per
    test module (a module that needs other service settings defines its own `server`)."""
    from test_service import Server

    tmp = tmp_path_factory.mktemp("serve")
    pw = tmp / "pw"
    pw.touch(mode=0o600)
    pw.write_text("serve test passphrase\n")
    srv = Server(tmp, pw).start()
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def cli_runner() -> Iterator[object]:
    from click.testing import CliRunner

    yield CliRunner()


@pytest.fixture
def srv() -> Iterator[Path]:
    """A folder a service install may use (tests/installer_host.py: not under /tmp, /home
    or /run, which the unit hides or empties), removed after."""
    from installer_host import service_folder

    with service_folder() as made:
        yield made
