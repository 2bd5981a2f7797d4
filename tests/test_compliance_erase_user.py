"""`semtrace erase --user` given the user as Semtrace shows them: the pseudonym that `threads
list`, the audit log, the signed report and the TUI print (the officer may hold nothing
else). It was taken for a user id and pseudonymised again, so the erasure erased nobody, said
'No records of u_<another pseudonym>' and exited 0 while the user's records stayed. Real
store (SQLCipher), redaction and the bundled model, through the CLI as an officer runs it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from conftest import init_store, write_stream
from test_spine import run_cli

ROWS = [
    {"tenant": "acme", "user_id": "alice-4471", "ts": "2026-03-02T09:00:00Z",
     "text": "Please reset the VPN token of my laptop."},
    {"tenant": "acme", "user_id": "alice-4471", "ts": "2026-03-03T09:01:00Z",
     "text": "What is a good sourdough hydration for a beginner?"},
    {"tenant": "acme", "user_id": "bob-9920", "ts": "2026-03-02T09:00:30Z",
     "text": "Why was the invoice charged twice?"},
    {"tenant": "globex", "user_id": "alice-4471", "ts": "2026-03-02T10:00:00Z",
     "text": "Book a meeting room for Friday."},
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data dir with alice's two days and bob's one in acme, alice in globex too."""
    tmp = tmp_path_factory.mktemp("erase-user")
    args, _pw, _cpw = init_store(tmp)
    src = write_stream(tmp / "in.jsonl", ROWS)
    assert run_cli("replay", str(src), "--out", str(tmp / "o.jsonl"), *args).returncode == 0
    yield tmp


def _copy(store: Path, tmp_path: Path) -> list[str]:
    """A copy of the module's data dir: each test erases in its own."""
    shutil.copytree(store / "data", tmp_path / "data")
    return ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(store / "pw")]


def _users(args: list[str], tenant: str = "acme") -> dict[str, int]:
    """Each user's pseudonym in `tenant` and how many turns `threads list` shows of them."""
    out = run_cli("threads", "list", "--json", "--tenant", tenant, *args)
    assert out.returncode == 0, out.stderr
    seen: dict[str, int] = {}
    for thread in json.loads(out.stdout):
        seen[thread["user"]] = seen.get(thread["user"], 0) + thread["turns"]
    return seen


def _pseudonym(args: list[str], user_id: str, tenant: str = "acme") -> str:
    out = run_cli("threads", "list", "--json", "--tenant", tenant, "--user", user_id, *args)
    users = {t["user"] for t in json.loads(out.stdout)}
    assert len(users) == 1, out.stderr
    return users.pop()


def _log(args: list[str]) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads(
        run_cli("audit", "log", "--json", "--all", *args).stdout)
    return entries


def _one_sentence(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_erase_by_the_pseudonym_threads_list_prints_erases_that_user(
        store: Path, tmp_path: Path) -> None:
    args = _copy(store, tmp_path)
    alice, bob = _pseudonym(args, "alice-4471"), _pseudonym(args, "bob-9920")
    out = run_cli("erase", "--tenant", "acme", "--user", alice, "--reason", "DSAR 118",
                  "--json", *args)
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert (done["user"], done["records"], done["complete"]) == (alice, 2, True)
    assert _users(args) == {bob: 1}  # alice gone, bob kept
    assert _pseudonym(args, "alice-4471", "globex") != alice  # another tenant: untouched
    entry = _log(args)[-1]
    assert entry["event"] == "erase"
    assert entry["details"]["user"] == alice  # type: ignore[index]
    again = run_cli("erase", "--tenant", "acme", "--user", alice, "--reason", "DSAR 118",
                    *args)  # asked again: the same user, nothing left of them
    assert again.returncode == 0 and again.stdout.startswith(f"No records of {alice} in acme")


def test_erase_by_the_start_of_a_pseudonym_is_refused_and_changes_nothing(
        store: Path, tmp_path: Path) -> None:
    """The TUI shows `u_` and 8 hex digits; an erasure cannot be undone, so the start of a
    pseudonym is refused rather than taken for a user (or for a user id)."""
    args = _copy(store, tmp_path)
    before, entries = _users(args), len(_log(args))
    start = _pseudonym(args, "alice-4471")[:10]
    out = run_cli("erase", "--tenant", "acme", "--user", start, "--reason", "DSAR 118", *args)
    assert out.returncode == 2 and out.stdout == ""
    assert "the start of the pseudonym of a user of acme" in _one_sentence(out.stderr)
    assert _users(args) == before and len(_log(args)) == entries  # nothing erased or audited


def test_all_tenants_given_a_pseudonym_is_refused_naming_its_tenant(
        store: Path, tmp_path: Path) -> None:
    """A pseudonym is per tenant: `--all-tenants` pseudonymised it again in every tenant and
    erased nobody anywhere, exit 0."""
    args = _copy(store, tmp_path)
    before, entries = _users(args), len(_log(args))
    alice = _pseudonym(args, "alice-4471")
    out = run_cli("erase", "--all-tenants", "--user", alice, "--reason", "DSAR 118", *args)
    assert out.returncode == 2 and out.stdout == ""
    assert "erase with --tenant acme and the whole pseudonym" in _one_sentence(out.stderr)
    assert _users(args) == before and len(_log(args)) == entries


def test_a_reason_naming_the_user_erased_by_pseudonym_is_refused_before_it_is_audited(
        store: Path, tmp_path: Path) -> None:
    """Given the pseudonym, the reason was checked against the pseudonym only: the raw user id
    in it went into the audit log for good."""
    args = _copy(store, tmp_path)
    before, entries = _users(args), len(_log(args))
    alice = _pseudonym(args, "alice-4471")
    out = run_cli("erase", "--tenant", "acme", "--user", alice, "--reason",
                  "DSAR of alice-4471", *args)
    assert out.returncode == 2
    assert "must not hold the user id" in _one_sentence(out.stderr)
    assert _users(args) == before and len(_log(args)) == entries
    assert "alice-4471" not in json.dumps(_log(args))


def test_a_user_id_is_still_taken_as_the_gateway_sends_it(store: Path, tmp_path: Path) -> None:
    args = _copy(store, tmp_path)
    alice, bob = _pseudonym(args, "alice-4471"), _pseudonym(args, "bob-9920")
    out = run_cli("erase", "--all-tenants", "--user", "alice-4471", "--reason", "DSAR 118",
                  "--json", *args)
    assert out.returncode == 0, out.stderr
    assert {t["tenant"]: t["records"] for t in json.loads(out.stdout)["tenants"]} == {
        "acme": 2, "globex": 1}
    assert _users(args) == {bob: 1} and alice not in _users(args) and not _users(args, "globex")


def test_access_to_a_user_erased_before_says_so_given_the_pseudonym_the_erasure_printed(
        store: Path, tmp_path: Path) -> None:
    """After an erasure only the pseudonym is left to name the user (the erasure's output,
    the audit log): `compliance access --user u_...` took it for a user id, pseudonymised it
    again and said 'none written, or all shredded' of a user erased, with no --json."""
    args = _copy(store, tmp_path)
    alice = _pseudonym(args, "alice-4471")
    assert run_cli("erase", "--tenant", "acme", "--user", alice, "--reason", "DSAR 118",
                   *args).returncode == 0
    for named in (alice, "alice-4471"):
        out = run_cli("compliance", "access", "--tenant", "acme", "--user", named, "--reason",
                      "DSAR 119", "--out", str(tmp_path / "alice.json"), "--json", *args)
        assert out.returncode == 1
        said = _one_sentence(out.stderr)
        assert "No records of that user in acme (the user was erased on " in said
        assert f"names {alice})" in said and "none written" not in said
        summary = json.loads(out.stdout)
        assert (summary["user"], summary["records"], summary["erased"]) == (alice, 0, True)
        # when, as a script reads it (ISO 8601, as erase --json gives it; was '... UTC')
        assert datetime.fromisoformat(summary["erased_at"]).tzinfo is not None
        assert summary["unattributable_buckets"] == 0
        assert not (tmp_path / "alice.json").exists()
    bob = run_cli("compliance", "access", "--tenant", "acme", "--user", "bob-9920", "--reason",
                  "DSAR 120", "--out", str(tmp_path / "bob.json"), "--json", *args)
    assert bob.returncode == 0 and json.loads(bob.stdout)["erased"] is False


def test_a_user_id_with_a_stray_space_or_the_wrong_case_is_noted_when_it_erases_nobody(
        store: Path, tmp_path: Path) -> None:
    """Copied with a trailing space, or typed in upper case, the id named nobody: 'No
    records', exit 0, and nothing said while the user's records stayed."""
    args = _copy(store, tmp_path)
    alice, bob = _pseudonym(args, "alice-4471"), _pseudonym(args, "bob-9920")
    out = run_cli("erase", "--tenant", "acme", "--user", "alice-4471 ", "--reason", "DSAR 9",
                  *args)
    assert out.returncode == 0 and out.stdout.startswith("No records of"), out.stderr
    assert "the same id without its leading or trailing spaces has" in _one_sentence(out.stderr)
    upper = run_cli("erase", "--tenant", "acme", "--user", "BOB-9920", "--reason", "DSAR 9",
                    "--json", *args)
    assert upper.returncode == 0 and json.loads(upper.stdout)["user_alike"] == "in lower case"
    assert "the same id in lower case has" in _one_sentence(upper.stderr)
    assert _users(args) == {alice: 2, bob: 1}  # a note, nothing more: both stay
    nobody = run_cli("erase", "--tenant", "acme", "--user", "carol-1", "--reason", "DSAR 9",
                     "--json", *args)
    assert nobody.stderr == "" and json.loads(nobody.stdout)["user_alike"] is None
    access = run_cli("compliance", "access", "--tenant", "acme", "--user", "ALICE-4471",
                     "--reason", "DSAR 9", "--out", str(tmp_path / "a.json"), *args)
    assert access.returncode == 1 and "the same id in lower case has records" in \
        _one_sentence(access.stderr)
