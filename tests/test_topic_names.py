"""A topic without a label reads the same in `semtrace stats` and on the TUI's topics screen.

A topic gets a label once `k_min_users` people share it, and the release may show a topic
before that (its people are a noisy count). The topics screen named it `tp_… · unlabelled`
while `stats topics` (and the topic rows of `stats blocks` and `stats incident`) printed
its id beside a blank, which read as a missing value; neither said why. Both now name it
`tp_… · unlabelled` and say in one line why it has no label; `--json` keeps `label: null`
(the fixed store of test_tui.py: tp_sql, bob's topic, has no label).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_tui import CLOCK, build_fixed_store, run, settle

NOTE = ("unlabelled: a topic is named once at least 5 people share it (k_min_users), so "
        "that a label never describes only a few people")
EXACT_NOTE = ("unlabelled: a topic is named once at least k_min_users people (privacy.toml) "
              "share it, so that a label never describes only a few people")


@pytest.fixture(scope="module")
def fixed_store(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    return build_fixed_store(tmp_path_factory.mktemp("fixed"), embedder)


def stats_out(store: Path, capsys: pytest.CaptureFixture[str], kind: str, *more: str) -> str:
    """`semtrace stats KIND` of bob's own view over the fixed store's window (exact)."""
    from appliance.cli import main

    main(["stats", kind, "--data-dir", str(store / "data"), "--key-file", str(store / "key"),
          "--tenant", "acme", "--user", "bob", "--role", "compliance",
          "--from", "2026-02-25", "--to", "2026-03-04", *more])
    return capsys.readouterr().out


def test_an_unlabelled_topic_reads_unlabelled_in_stats_as_on_the_topics_screen(
        fixed_store: Path, capsys: pytest.CaptureFixture[str], embedder: Any) -> None:
    from appliance.keys import read_key_file
    from appliance.runtime import open_runtime
    from appliance.tui.app import make_app

    for kind in ("topics", "incident"):
        text = stats_out(fixed_store, capsys, kind)
        row = next(line for line in text.splitlines() if "tp_sql" in line)
        words = row.split()
        assert words[words.index("tp_sql"):][:3] == ["tp_sql", "·", "unlabelled"], text
        assert EXACT_NOTE in " ".join(line.strip() for line in text.splitlines()), text
        rows = json.loads(stats_out(fixed_store, capsys, kind, "--json"))["rows"]
        assert [r["label"] for r in rows if r["key"] == "tp_sql"] == [None]  # JSON: null

    seen: dict[str, str] = {}

    async def scenario(pilot: Any) -> None:
        await pilot.press("o")
        await settle(pilot)
        table = pilot.app.screen.query_one("#topics")
        seen["cell"] = str(table.get_cell("acme\0tp_sql", "topic"))
        seen["status"] = str(pilot.app.screen.query_one("#status").render())

    rt = open_runtime(fixed_store / "data", read_key_file(fixed_store / "key"), readonly=True)
    try:
        run(make_app(rt, role="analyst", clock=lambda: CLOCK, refresh_seconds=3600,
                     embedder_factory=lambda: embedder), scenario, size=(220, 30))
    finally:
        rt.close()
    assert seen["cell"] == "tp_sql · unlabelled"
    assert NOTE in seen["status"], seen["status"]  # the screen says why, as stats does
