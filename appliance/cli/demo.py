"""`semtrace demo`: the service on a fresh store, fed the demo stream, its threads shown."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from appliance.cli import credential, emit_json
from appliance.errors import InputError, SemtraceError
from appliance.socket_folder import too_long

if TYPE_CHECKING:
    from appliance.records import Thread

DEMO_STREAM = Path(__file__).parent.parent / "demo" / "demo-stream.jsonl"
# The demo tenant's own privacy policy: cross-user topics and search on, the shipped budget.
DEMO_PRIVACY = Path(__file__).parent.parent / "demo" / "privacy.toml"


@contextmanager
def demo_policies(base: Path) -> Iterator[Path]:
    """`base/policies`: the policies in force with the demo's privacy.toml, in force
    (SEMTRACE_POLICY_DIR) for this command and the service it starts."""
    from appliance.config.paths import POLICY_DIR_ENV, policy_dir

    folder = base / "policies"
    folder.mkdir(mode=0o700, exist_ok=True)
    for src in sorted(policy_dir().iterdir()):
        if src.is_file() and src.suffix in (".toml", ".json"):
            shutil.copyfile(src, folder / src.name)
    shutil.copyfile(DEMO_PRIVACY, folder / "privacy.toml")
    before = os.environ.get(POLICY_DIR_ENV)
    os.environ[POLICY_DIR_ENV] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(POLICY_DIR_ENV, None)
        else:
            os.environ[POLICY_DIR_ENV] = before


def _rebased(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Shift the demo's timestamps so that it ends now (older prompts would be past retention)."""
    from datetime import UTC, datetime

    from appliance.ingest import parse_ts

    times = [parse_ts(r["ts"]) for r in rows]
    shift = datetime.now(UTC).replace(microsecond=0) - max(times)
    return [{**r, "ts": (t + shift).strftime("%Y-%m-%dT%H:%M:%SZ")} for r, t in zip(
        rows, times, strict=True)]


def refused_sentence(failed: list[dict[str, Any]], sent: int) -> str:
    """What the demo says when the service refused prompts of its stream: how many, and
    the first refusal's own sentence, which says what to do ('Retry once space is
    freed.'); before, "The demo service refused 2 prompts." gave neither cause nor remedy."""
    error = failed[0].get("error")
    error = error if isinstance(error, dict) else {}
    said = str(error.get("message") or "no reason given").rstrip()
    return (f"The demo service refused {len(failed):,} of the demo stream's {sent:,} prompts, "
            f"so the demo stops here; the first refusal ({error.get('code', 'no code')}) said: "
            + (said if said.endswith((".", "!", "?")) else said + "."))


def _demo_through_service(data_dir: Path, pw: Path) -> None:
    """Start `semtrace serve`, send the demo stream through its socket, stop it (SIGTERM)."""
    import json
    import signal
    import subprocess
    import time

    from appliance.client import Client

    args = ["--data-dir", str(data_dir), "--passphrase-file", str(pw)]
    # what it is doing, on stderr (stdout may be --json): the start alone took 20 s on a
    # fresh 2-core host, and the demo said nothing until it printed the threads
    click.echo("semtrace: demo: starting the service on a new encrypted store (it loads the "
               "redaction and embedding models first)...", err=True)
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve", *args,
                             "--log-level", "warning"], stdout=subprocess.DEVNULL)
    try:
        sock = data_dir / "semtrace.sock"
        deadline = time.monotonic() + 600  # a busy host loads the models slowly
        while True:
            if proc.poll() is not None:  # its own sentence is on stderr, above this one
                raise SemtraceError(f"The demo service stopped before it listened (exit "
                                    f"status {proc.returncode}; its own message, if it printed "
                                    "one, is above): fix that, then run `semtrace demo` again.")
            try:
                with Client(sock, timeout=5) as c:
                    c.ping()
                break
            except SemtraceError:
                if time.monotonic() > deadline:
                    raise SemtraceError(
                        "The demo service did not answer on its socket within 10 minutes (it "
                        "loads its models first, slowly on a busy host) and was stopped: run "
                        "`semtrace demo` again when the host is less busy.") from None
                time.sleep(0.2)
        rows = _rebased([json.loads(line) for line in DEMO_STREAM.read_text().splitlines()
                         if line.strip()])
        requests = ({"v": 1, "op": "ingest", "request_id": f"demo-{r['index']}",
                     **{k: v for k, v in r.items() if k != "index"}} for r in rows)
        people = len({r["user_id"] for r in rows})
        click.echo(f"semtrace: demo: sending the demo stream's {len(rows)} prompts of "
                   f"{people} people through its socket...", err=True)
        with Client(sock) as c:
            failed = [r for r in c.stream(requests) if not r.get("ok")]
        if failed:
            raise SemtraceError(refused_sentence(failed, len(rows)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def _print_threads(found: list[Thread], as_json: bool, k_min_users: int) -> None:
    from appliance.tui.format import plural

    if as_json:
        emit_json(found)
        return
    click.echo(f"Found {len(found)} threads in the demo stream (sent through the service "
               "socket).\n"
               "Each thread: its id, tenant/user (a pseudonym: user ids are never stored), "
               "turns and topic.\n"
               "Each turn: its time (UTC), position, intent, sim= its similarity to the turn "
               "it continues\n(best= on a new thread: the closest earlier turn, not taken), "
               "and its text as stored, PII replaced\nby placeholders such as <PERSON_1>.\n")
    for t in found:
        topic = f"  topic: {t.topic_label}" if t.topic_label else ""
        # counts read as words, as the TUI's thread view and `threads show` say them
        click.echo(f"{t.thread_id}  {t.tenant}/{t.user}  {plural(t.turns, 'turn')}{topic}")
        for r in t.records:
            # a turn without a parent: its closest earlier turn's, not taken (as threads
            # show and the TUI say it: best=), never read as what it continues
            label = "sim" if r.parent_id is not None else "best"
            sim = "" if r.similarity is None else f" {label}={r.similarity:.2f}"
            intent = r.intent or ""
            click.echo(f"   {r.ts:%a %H:%M} {r.position:<12} {intent:<24}{sim:<10} {r.text}")
        click.echo("")
    unnamed = sum(1 for t in found if not t.topic_label)
    if unnamed:
        click.echo(f"{unnamed} of the {len(found)} threads show no topic: a topic is named only "
                   f"once at least {k_min_users} people share it (k_min_users in "
                   "privacy.toml), so that a label never describes only a few people, and "
                   "only by a phrase its threads share that says what it is about.")


@click.command()
@click.option("--keep", type=click.Path(path_type=Path), default=None,
              help="Keep the demo data dir here instead of a temporary one.")
@click.option("--no-tui", is_flag=True, help="Only print the threads, even on a terminal.")
@click.option("--json", "as_json", is_flag=True, help="Print the threads as JSON.")
def demo(keep: Path | None, no_tui: bool, as_json: bool) -> None:
    """Run the service on a fresh store, send the demo stream through it, show the threads."""
    from appliance.config.paths import POLICY_DIR_ENV
    from appliance.query import get_thread, list_threads
    from appliance.runtime import init_data_dir, is_initialised, open_runtime

    # absolute (and without `..`): the commands it prints at the end run from any folder
    base = Path(os.path.abspath(keep)) if keep else Path(tempfile.mkdtemp(
        prefix="semtrace-demo-"))
    sock = base / "data" / "semtrace.sock"
    if keep is not None and (said := too_long(sock)) is not None:
        raise InputError(f"--keep {keep} is too deep a folder for the demo's socket {sock}: "
                         f"{said}. Give a shorter one; nothing was made.")
    try:
        base.mkdir(parents=True, exist_ok=True)
        pw = base / "passphrase"
        if not pw.exists():
            pw.touch(mode=0o600)
            pw.write_text(secrets.token_urlsafe(24) + "\n")
        data_dir = base / "data"
        cred = credential(pw, None)
        with demo_policies(base):
            if not is_initialised(data_dir):
                init_data_dir(data_dir, cred)
            _demo_through_service(data_dir, pw)
            rt = open_runtime(data_dir, cred, readonly=True)
            try:
                found = [t for t in (get_thread(rt.store, t.thread_id)
                                     for t in list_threads(rt.store, limit=1000)) if t]
                found.sort(key=lambda t: t.first_ts)
                _print_threads(found, as_json, rt.policies.privacy.k_min_users)
                if not (no_tui or as_json) and sys.stdout.isatty() and sys.stdin.isatty():
                    from appliance.tui.app import make_app

                    click.echo("Opening the TUI on the demo store (o: topics, /: search "
                               "across its people; q quits)...")
                    make_app(rt, role="analyst").run()
            finally:
                rt.close()
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
    if keep is not None:
        # On stderr under --json: stdout is the JSON document and nothing else.
        data_dir, pw = base / "data", base / "passphrase"
        opts = f"--data-dir {shlex.quote(str(data_dir))} --passphrase-file {shlex.quote(str(pw))}"
        cmd = shlex.quote(semtrace_command())
        click.echo(f"Demo data kept in {base}: explore it with its policies (cross-user "
                   f"topics and search on for tenant demo)\n"
                   f"  export {POLICY_DIR_ENV}={shlex.quote(str(base / 'policies'))}\n"
                   f"  {cmd} tui {opts}\n"
                   f"  {cmd} search 'how do I reset my password' --tenant demo {opts}\n"
                   f"  {cmd} threads list {opts}",
                   err=as_json)


def semtrace_command() -> str:
    """How a shell runs this `semtrace`: its name where PATH finds this one, else its path
    (after `make demo` the venv's bin is not on PATH: `semtrace tui ...` was 'command not
    found')."""
    script = Path(sys.executable).parent / "semtrace"
    if not script.is_file():  # not run from an install (no entry point beside python)
        return "semtrace"
    found = shutil.which("semtrace")
    if found is not None and Path(found).resolve() == script.resolve():
        return "semtrace"
    return str(script)


COMMANDS = [demo]
