"""One user's `stats` view takes the user as the product shows it, and says why it is empty.

`semtrace stats topics --user u_…` with the pseudonym `threads list` prints (the obvious
thing to copy) printed "(nothing to show)": `--user` took only the user id as the gateway
sends it and pseudonymised it again, so it matched nobody (later it said so, and still
refused what the product shows). It now takes the pseudonym, or its start as the TUI's
threads screen shows it, and refuses a start that names several users in one sentence. A
user with threads but none blocked got a bare line from `stats blocks` (the fixed store of
test_tui.py: bob has a thread in tp_sql, none blocked).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_tui import build_fixed_store


@pytest.fixture(scope="module")
def fixed_store(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    return build_fixed_store(tmp_path_factory.mktemp("fixed"), embedder)


def one_user(store: Path, capsys: pytest.CaptureFixture[str], kind: str, user: str) -> str:
    from appliance.cli import main

    main(["stats", kind, "--data-dir", str(store / "data"), "--key-file", str(store / "key"),
          "--tenant", "acme", "--user", user, "--role", "compliance",
          "--from", "2026-02-25", "--to", "2026-03-04"])
    return " ".join(capsys.readouterr().out.split())


def test_one_users_view_takes_the_pseudonym_the_product_shows(
        fixed_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.cli import main
    from appliance.keys import read_key_file
    from appliance.runtime import open_runtime
    from appliance.tui.format import short_user

    rt = open_runtime(fixed_store / "data", read_key_file(fixed_store / "key"), readonly=True)
    try:
        bob = rt.keyring.pseudonym("acme", "bob")
    finally:
        rt.close()
    own = one_user(fixed_store, capsys, "topics", "bob")
    assert "tp_sql" in own and "threads 1" in own, own  # his own id
    # before: "(nothing to show: ...; --user takes the user id as the gateway sends it, not
    # the pseudonym that `threads list` prints)"
    assert one_user(fixed_store, capsys, "topics", bob) == own
    assert one_user(fixed_store, capsys, "topics", short_user(bob)) == own  # the TUI's column
    # "u_" starts every pseudonym: one sentence, exit 2, nothing echoed
    with pytest.raises(SystemExit) as done:
        main(["stats", "topics", "--data-dir", str(fixed_store / "data"), "--key-file",
              str(fixed_store / "key"), "--tenant", "acme", "--user", "u_", "--role",
              "compliance"])
    said = capsys.readouterr()
    assert done.value.code == 2 and said.out == "", said
    assert said.err == (
        "semtrace: That --user is the start of the pseudonyms of several users of acme: give "
        "the whole pseudonym, as `threads list` prints it.\n"), said.err


def test_an_empty_one_user_view_says_why(fixed_store: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = one_user(fixed_store, capsys, "blocks", "bob")
    assert ("(nothing to show: this user has no thread that hit a guardrail block in acme "
            "in this window)") in out, out
    assert "bob" not in out  # the id typed is not echoed
    out = one_user(fixed_store, capsys, "topics", "nobody@example.com")
    assert "(nothing to show: this user has no threads in acme in this window)" in out, out


def test_threads_list_and_search_take_the_pseudonym_they_print(
        fixed_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`threads list --user` and `search --user` pseudonymised the pseudonym again too:
    "(no threads in scope)" for the very value `threads list` prints in its user column."""
    from appliance.cli import main
    from appliance.keys import read_key_file
    from appliance.runtime import open_runtime
    from appliance.tui.format import short_user

    rt = open_runtime(fixed_store / "data", read_key_file(fixed_store / "key"), readonly=True)
    try:
        bob = rt.keyring.pseudonym("acme", "bob")
    finally:
        rt.close()
    creds = ["--data-dir", str(fixed_store / "data"), "--key-file", str(fixed_store / "key"),
             "--tenant", "acme"]
    for user in ("bob", bob, short_user(bob)):
        main(["threads", "list", *creds, "--user", user])
        listed = capsys.readouterr().out
        assert "th_0000000000000003" in listed and "th_0000000000000001" not in listed, listed
    main(["search", "SQL query counting orders", *creds, "--user", short_user(bob),
          "--role", "compliance"])
    found = capsys.readouterr().out
    assert "th_0000000000000003" in found and "th_0000000000000001" not in found, found


def test_one_users_incident_view_speaks_of_no_noise(
        fixed_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bob's own incident view is exact (its header says so), yet its legend read "* marks
    a rise beyond the noise" and "new: none in the baseline (its noisy count at or under
    0)": a reader looked for noise that is not there."""
    own = one_user(fixed_store, capsys, "incident", "bob")
    assert "exact (one user's own data)" in own and "new*" in own, own
    assert "noise" not in own and "noisy" not in own, own
    assert "new: none in the baseline, some in the window" in own
