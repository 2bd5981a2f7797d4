"""`semtrace replay | threads | search | demo`: the data commands."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

from appliance.cli import (
    ask,
    credential,
    credential_options,
    data_dir_option,
    emit_json,
    open_dir,
    query_socket,
    query_socket_option,
    role_option,
)
from appliance.errors import SemtraceError
from appliance.keys import Keyring
from appliance.records import Thread
from appliance.runtime import (
    Runtime,
    init_data_dir,
    is_initialised,
    make_pipeline,
    open_runtime,
    prepare_dir,
)

DEMO_STREAM = Path(__file__).parent.parent / "demo" / "demo-stream.jsonl"


@contextlib.contextmanager
def _replay_runtime(data_dir: Path | None, passphrase_file: Path | None,
                    key_file: Path | None) -> Iterator[Runtime]:
    """The named data dir (initialised if empty or absent), or an ephemeral one."""
    if data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="semtrace-replay-"))
        try:
            prepare_dir(tmp)
            ring = Keyring.random()
            from appliance.store import Store

            Store.open(tmp, ring).close()
            rt = open_runtime(tmp, keyring=ring)  # the key lives in memory only
            try:
                yield rt
            finally:
                rt.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    from appliance.lock import DataDirLock

    cred = credential(passphrase_file, key_file)
    if not is_initialised(data_dir):
        init_data_dir(data_dir, cred)
    lock = DataDirLock(data_dir)  # a running service (or another replay) owns the dir
    lock.acquire()
    try:
        rt = open_runtime(data_dir, cred)
        try:
            yield rt
        finally:
            rt.close()
    finally:
        lock.release()


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def run_replay(rt: Runtime, source: Path, out: IO[str], *, strict: bool, batch: int) -> object:
    from rich.progress import Progress

    from appliance.replay import ReplayReport, read_prompts, replay, source_tag

    report = ReplayReport()
    pipe = make_pipeline(rt)
    total = _count_lines(source)
    with source.open("r", encoding="utf-8", errors="strict") as fh, Progress(
            transient=True, disable=not sys.stderr.isatty()) as prog:
        task = prog.add_task("replay", total=total)
        try:
            prompts = read_prompts(fh, max_text_chars=rt.policies.correlation.max_text_chars,
                                   strict=strict, report=report, tag=source_tag(source))
            replay(pipe, prompts, out, batch=batch, report=report,
                   progress=lambda n: prog.advance(task, n))
        except UnicodeDecodeError:
            raise SemtraceError(f"{source} is not valid UTF-8.") from None
    return report


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Where to write one JSON line per input prompt.")
@data_dir_option
@credential_options
@click.option("--strict", is_flag=True, help="Stop at the first bad line instead of skipping.")
@click.option("--batch", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Prompts per redaction/embedding batch and transaction.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def replay(source: Path, out_path: Path, data_dir: Path | None, passphrase_file: Path | None,
           key_file: Path | None, strict: bool, batch: int, as_json: bool) -> None:
    """Run the whole pipeline over a JSON-lines stream of prompts."""
    with _replay_runtime(data_dir, passphrase_file, key_file) as rt:
        tmp_out = out_path.with_name(out_path.name + ".partial")
        try:
            with tmp_out.open("w", encoding="utf-8") as out:
                report = run_replay(rt, source, out, strict=strict, batch=batch)
            tmp_out.replace(out_path)
        finally:
            tmp_out.unlink(missing_ok=True)
    for lineno, msg in report.skipped:  # type: ignore[attr-defined]
        click.echo(f"semtrace: line {lineno} skipped: {msg}", err=True)
    summary = {"lines": report.lines, "ingested": report.ingested,  # type: ignore[attr-defined]
               "duplicates": report.duplicates,  # type: ignore[attr-defined]
               "skipped": len(report.skipped), "out": str(out_path)}  # type: ignore[attr-defined]
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"Replayed {summary['ingested']} prompts ({summary['skipped']} skipped, "
                   f"{summary['duplicates']} duplicates) into {out_path}.", err=True)


@click.group()
def threads() -> None:
    """Conversation threads."""


@threads.command("list")
@data_dir_option
@credential_options
@role_option
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option("--user", default=None, help="Only this user id (needs --tenant).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@query_socket_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def threads_list(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
                 role: str | None, tenant: str | None, user: str | None, limit: int,
                 socket_path: Path | None, as_json: bool) -> None:
    """List threads, most recent activity first, each with its title and cost."""
    from appliance.query import ThreadFilter, list_threads
    from appliance.reads import thread_from_json, user_pseudonym
    from appliance.roles import bound_tenants, require
    from appliance.tui.format import money

    socket_path = query_socket(socket_path, data_dir, passphrase_file, key_file)
    if socket_path is not None:
        reply = ask(socket_path, {"op": "threads", "role": role, "tenant": tenant,
                                  "user": user, "limit": limit})
        rows, currency = [thread_from_json(t) for t in reply["threads"]], reply["currency"]
    else:
        rt = open_dir(data_dir, passphrase_file, key_file, readonly=True)
        try:
            name = require(rt.policies.access, role, "threads:read", tenant=tenant)
            bound = bound_tenants(rt.policies.access, name)
            rows = [t for t in list_threads(rt.store, ThreadFilter(
                tenant=tenant or (bound[0] if bound and len(bound) == 1 else None),
                user=user_pseudonym(rt.keyring, tenant, user)), limit=limit)
                if bound is None or t.tenant in bound]
            currency = rt.policies.pricing.currency
        finally:
            rt.close()
    if as_json:
        emit_json(rows)
        return
    cost = f"cost {currency}"
    click.echo(f"{'thread':<20} {'tenant':<10} {'user':<24} {'started':<20} {'turns':>5} "
               f"{cost:>10}  {'topic':<24}  title")
    for t in rows:
        topic = t.topic_label or t.topic_id or "–"
        click.echo(f"{t.thread_id:<20} {t.tenant:<10} {t.user:<24} "
                   f"{t.first_ts:%Y-%m-%d %H:%M:%S}  {t.turns:>5} {money(t.cost):>10}  "
                   f"{topic:<24.24}  {t.title if t.title is not None else '[shredded]'}")


@threads.command("show")
@click.argument("thread_id")
@data_dir_option
@credential_options
@role_option
@query_socket_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def threads_show(thread_id: str, data_dir: Path | None, passphrase_file: Path | None,
                 key_file: Path | None, role: str | None, socket_path: Path | None,
                 as_json: bool) -> None:
    """Show one thread's turns in order (redacted text)."""
    from appliance.query import get_thread
    from appliance.reads import thread_from_json
    from appliance.roles import require, sees
    from appliance.tui.format import money

    socket_path = query_socket(socket_path, data_dir, passphrase_file, key_file)
    thread: Thread | None
    if socket_path is not None:
        shown = ask(socket_path, {"op": "thread", "role": role, "thread_id": thread_id})
        thread, currency = thread_from_json(shown["thread"]), shown["currency"]
    else:
        rt = open_dir(data_dir, passphrase_file, key_file, readonly=True)
        try:
            name = require(rt.policies.access, role, "threads:read")
            thread = get_thread(rt.store, thread_id)
            if thread is not None and not sees(rt.policies.access, name, thread.tenant):
                thread = None  # another tenant's thread: as if absent
            currency = rt.policies.pricing.currency
        finally:
            rt.close()
    if thread is None:
        raise SemtraceError(f"No thread {thread_id!r} in this store.")
    if as_json:
        emit_json(thread)
        return
    click.echo(f"Thread {thread.thread_id} ({thread.tenant}, {thread.user}, {thread.turns} turns, "
               f"cost {money(thread.cost)} {currency}): "
               f"{thread.title if thread.title is not None else '[shredded]'}")
    for r in thread.records:
        sim = "" if r.similarity is None else f" sim={r.similarity:.2f}"
        click.echo(f"  {r.ts:%Y-%m-%d %H:%M:%S}  #{r.record_id:<6} {r.position:<12}{sim}")
        click.echo(f"      {r.text if r.text is not None else '[shredded]'}")


@click.command()
@click.argument("text")
@data_dir_option
@credential_options
@role_option
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option("--user", default=None, help="Only this user id (needs --tenant).")
@click.option("--since", default=None, help="Only prompts from this ISO date or time on.")
@click.option("-k", "--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@query_socket_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of hits.")
def search(text: str, data_dir: Path | None, passphrase_file: Path | None,
           key_file: Path | None, role: str | None, tenant: str | None, user: str | None,
           since: str | None, limit: int, socket_path: Path | None, as_json: bool) -> None:
    """Find stored prompts similar to TEXT (redacted text is searched).

    Scoped by role: one user's prompts with --user, other users' prompts only in
    tenants whose privacy policy allows cross-user search (or for auditors).
    Exact below a size threshold, usearch HNSW above it.
    """
    from appliance.ingest import parse_ts
    from appliance.reads import run_search
    from appliance.roles import require

    if not text.strip():
        raise SemtraceError("The search text is empty.")
    try:
        start = parse_ts(since) if since is not None else None
    except SemtraceError:
        raise SemtraceError("--since must be an ISO-8601 date or time, e.g. 2024-03-04.") from None
    socket_path = query_socket(socket_path, data_dir, passphrase_file, key_file)
    if socket_path is not None:
        reply = ask(socket_path, {"op": "search", "role": role, "text": text, "tenant": tenant,
                                  "user": user, "since": since, "limit": limit})
        hits = reply["hits"]
        if as_json:
            emit_json(hits)
            return
        for h in hits:
            click.echo(f"{h['similarity']:.3f}  {h['thread_id']}  #{h['record_id']}  {h['text']}")
        return
    rt = open_dir(data_dir, passphrase_file, key_file, readonly=True)
    try:
        from appliance.embed import LlamaEmbedder

        role_name = require(rt.policies.access, role, "search", tenant=tenant)
        found = run_search(rt.store, rt.keyring, rt.policies, role_name,
                           LlamaEmbedder(rt.policies.correlation.embedding), text,
                           tenant=tenant, user=user, since=start, limit=limit)
    finally:
        rt.close()
    if as_json:
        emit_json(found)
        return
    for f in found:
        click.echo(f"{f.similarity:.3f}  {f.thread_id}  #{f.record_id}  {f.text}")


def _rebased(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Shift the demo's timestamps so that it ends now (older prompts would be past retention)."""
    from datetime import UTC, datetime

    from appliance.ingest import parse_ts

    times = [parse_ts(r["ts"]) for r in rows]
    shift = datetime.now(UTC).replace(microsecond=0) - max(times)
    return [{**r, "ts": (t + shift).strftime("%Y-%m-%dT%H:%M:%SZ")} for r, t in zip(
        rows, times, strict=True)]


def _demo_through_service(data_dir: Path, pw: Path) -> None:
    """Start `semtrace serve`, send the demo stream through its socket, stop it (SIGTERM)."""
    import json
    import signal
    import subprocess
    import time

    from appliance.client import Client

    args = ["--data-dir", str(data_dir), "--passphrase-file", str(pw)]
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve", *args,
                             "--log-level", "warning"], stdout=subprocess.DEVNULL)
    try:
        sock = data_dir / "semtrace.sock"
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise SemtraceError("The demo service did not start.")
            try:
                with Client(sock, timeout=5) as c:
                    c.ping()
                break
            except SemtraceError:
                if time.monotonic() > deadline:
                    raise SemtraceError("The demo service did not start in time.") from None
                time.sleep(0.2)
        rows = _rebased([json.loads(line) for line in DEMO_STREAM.read_text().splitlines()
                         if line.strip()])
        requests = ({"v": 1, "op": "ingest", "request_id": f"demo-{r['index']}",
                     **{k: v for k, v in r.items() if k != "index"}} for r in rows)
        with Client(sock) as c:
            failed = [r for r in c.stream(requests) if not r.get("ok")]
        if failed:
            raise SemtraceError(f"The demo service refused {len(failed)} prompt(s).")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def _print_threads(found: list[Thread], as_json: bool) -> None:
    if as_json:
        emit_json(found)
        return
    click.echo(f"Found {len(found)} threads in the demo stream (sent through the service "
               "socket):\n")
    for t in found:
        click.echo(f"{t.thread_id}  {t.tenant}/{t.user}  {t.turns} turn(s)")
        for r in t.records:
            sim = "" if r.similarity is None else f" sim={r.similarity:.2f}"
            intent = r.intent or ""
            click.echo(f"   {r.ts:%a %H:%M} {r.position:<12} {intent:<24}{sim:<10} {r.text}")
        click.echo("")


@click.command()
@click.option("--keep", type=click.Path(path_type=Path), default=None,
              help="Keep the demo data dir here instead of a temporary one.")
@click.option("--no-tui", is_flag=True, help="Only print the threads, even on a terminal.")
@click.option("--json", "as_json", is_flag=True, help="Print the threads as JSON.")
def demo(keep: Path | None, no_tui: bool, as_json: bool) -> None:
    """Run the service on a fresh store, send the demo stream through it, show the threads."""
    from appliance.query import get_thread, list_threads

    base = keep or Path(tempfile.mkdtemp(prefix="semtrace-demo-"))
    try:
        base.mkdir(parents=True, exist_ok=True)
        pw = base / "passphrase"
        if not pw.exists():
            pw.touch(mode=0o600)
            pw.write_text(secrets.token_urlsafe(24) + "\n")
        data_dir = base / "data"
        cred = credential(pw, None)
        if not is_initialised(data_dir):
            init_data_dir(data_dir, cred)
        _demo_through_service(data_dir, pw)
        rt = open_runtime(data_dir, cred, readonly=True)
        try:
            found = [t for t in (get_thread(rt.store, t.thread_id)
                                 for t in list_threads(rt.store, limit=1000)) if t]
            found.sort(key=lambda t: t.first_ts)
            _print_threads(found, as_json)
            if not (no_tui or as_json) and sys.stdout.isatty() and sys.stdin.isatty():
                from appliance.tui.app import make_app

                click.echo("Opening the TUI on the demo store (q quits)...")
                make_app(rt, role="analyst").run()
        finally:
            rt.close()
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
    if keep is not None:
        click.echo(f"Demo data kept in {base} (passphrase in {base / 'passphrase'}).")


COMMANDS = [replay, threads, search, demo]


@click.command()
@data_dir_option
@credential_options
@click.option("--batch", type=click.IntRange(1, 4096), default=256, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def reembed(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
            batch: int, as_json: bool) -> None:
    """Re-embed stored prompts whose vectors come from another model (resumable)."""
    from rich.progress import Progress

    from appliance.embed import LlamaEmbedder
    from appliance.service import DataDirLock

    rt = open_dir(data_dir, passphrase_file, key_file)
    lock = DataDirLock(rt.data_dir)
    done = 0
    try:
        lock.acquire()
        embedder = LlamaEmbedder(rt.policies.correlation.embedding)
        total = rt.store.count_stale(embedder.model_id)
        with Progress(transient=True, disable=not sys.stderr.isatty()) as prog:
            task = prog.add_task("re-embedding", total=total)
            while rows := rt.store.stale_texts(embedder.model_id, batch):
                vectors, _ = embedder.embed([t for _, t in rows])
                rt.store.replace_vectors([(rid, v) for (rid, _), v in zip(rows, vectors,
                                                                           strict=True)],
                                         embedder.model_id)  # each batch commits: resumable
                done += len(rows)
                prog.advance(task, len(rows))
    finally:
        lock.release()
        rt.close()
    if as_json:
        emit_json({"reembedded": done})
    else:
        click.echo(f"Re-embedded {done} prompt(s) with the current model.")


COMMANDS.append(reembed)
