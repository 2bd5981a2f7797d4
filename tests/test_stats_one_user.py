"""One user's `stats` view that shows nothing says why, in one sentence.

`semtrace stats topics --user u_…` with the pseudonym `threads list` prints (the obvious
thing to copy) printed "(nothing to show)": `--user` takes the user id as the gateway sends
it and pseudonymises it again, so it matched nobody, with nothing saying so; and a user
with threads but none blocked got the same bare line from `stats blocks` (the fixed store
of test_tui.py: bob has a thread in tp_sql, none blocked).
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


def test_an_empty_one_user_view_says_why(fixed_store: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.keys import read_key_file
    from appliance.runtime import open_runtime

    rt = open_runtime(fixed_store / "data", read_key_file(fixed_store / "key"), readonly=True)
    try:
        bob = rt.keyring.pseudonym("acme", "bob")
    finally:
        rt.close()
    assert "tp_sql" in one_user(fixed_store, capsys, "topics", "bob")  # his own id works
    out = one_user(fixed_store, capsys, "topics", bob)
    assert ("(nothing to show: this user has no threads in acme in this window; --user "
            "takes the user id as the gateway sends it, not the pseudonym that `threads "
            "list` prints)") in out, out
    out = one_user(fixed_store, capsys, "blocks", "bob")
    assert ("(nothing to show: this user has no thread that hit a guardrail block in acme "
            "in this window)") in out, out
    assert "bob" not in out  # the id typed is not echoed
