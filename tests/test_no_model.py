"""Calls whose gateway named no model say so, in `stats` and on the models screen.

They were one row keyed `(unknown)` with nothing beside it in `stats models`, `stats
incident` and the TUI's model comparison: read as "a model we could not identify" (or not
priced), when it means the gateway sent no `model` with the call. The row keeps its key
(releases hold it) and now carries the label `no model named` (`--json`: `label`).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import make_prompt
from test_tui import build_fixed_store, run_on_copy, settle

ONE_USER = ["--tenant", "acme", "--user", "dave", "--role", "compliance",
            "--from", "2026-03-01", "--to", "2026-03-05"]


def test_one_users_calls_without_a_model_read_no_model_named(
        pipeline: Any, data_dir: Path, passphrase_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.cli import main
    from appliance.records import Response

    ok = Response(input_tokens=30, output_tokens=60, status="ok")
    pipeline.process([
        make_prompt("How do I reset my account password?", user="dave", response=ok),
        make_prompt("Plan a weekend trip to the coast", user="dave", minutes=90,
                    model="openai/gpt-4o", response=ok)])
    creds = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    main(["stats", "models", *creds, *ONE_USER])
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()
            if line.startswith("  (") or line.startswith("  openai")}
    # before: "(unknown)" followed by blanks
    assert rows["(unknown)"].split("threads")[0].split() == ["(unknown)", "no", "model",
                                                              "named"], rows
    assert rows["openai/gpt-4o"].split("threads")[0].split() == ["openai/gpt-4o"], rows
    main(["stats", "models", *creds, *ONE_USER, "--json"])
    labels = {r["key"]: r["label"] for r in json.loads(capsys.readouterr().out)["rows"]}
    assert labels == {"(unknown)": "no model named", "openai/gpt-4o": None}
    main(["stats", "incident", *creds, *ONE_USER, "--json"])
    lifts = json.loads(capsys.readouterr().out)["rows"]
    assert [r["label"] for r in lifts if r["dimension"] == "model"
            and r["key"] == "(unknown)"] == ["no model named"], lifts


def test_the_models_screen_names_the_calls_without_a_model(
        tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> None:
    """Today's models release (stored in the fixed SQLCipher store) with an `(unknown)`
    group: the comparison's column says what it is."""
    from appliance import analytics
    from appliance.keys import read_key_file
    from appliance.privacy import Figure, GroupFigures, Release
    from appliance.releases import ReleaseCache
    from appliance.runtime import open_runtime

    store = build_fixed_store(tmp_path_factory.mktemp("fixed"), embedder)
    copy = tmp_path_factory.mktemp("copy") / "fixed"
    shutil.copytree(store, copy)
    now = datetime.now(UTC)
    start, end = analytics.default_window(now)
    rt = open_runtime(copy / "data", read_key_file(copy / "key"))
    try:
        groups = tuple(GroupFigures(key, Figure(n, 0.9, False), {}, Figure(20.0, 0.9, False))
                       for key, n in (("gpt-4o", 70.0), ("(unknown)", 40.0)))
        ReleaseCache(rt.store.db).put("acme", analytics.group_key(
            "models", start, end, cost_bound=rt.policies.pricing.thread_cost_bound),
            f"{now:%Y-%m-%d}", Release(groups=groups, exact=False, epsilon=1.0,
                                       k_min_users=5, released_at=now.timestamp()))
    finally:
        rt.close()
    seen: list[str] = []

    async def scenario(pilot: Any) -> None:
        await pilot.press("c")
        await settle(pilot)
        table = pilot.app.screen.query_one("#compare")
        seen.extend(str(c.label) for c in table.columns.values())

    run_on_copy(copy, scenario, clock=lambda: now, embedder=embedder, size=(120, 30))
    # two tenants on the screen: each column names its tenant; before: "acme · (unknown)"
    assert seen[1:] == ["acme · gpt-4o", "acme · (unknown) · no model named"], seen
