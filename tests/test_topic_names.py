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
from test_tui import CLOCK, build_fixed_store, run, run_on_copy, settle

NOTE = ("unlabelled: a topic is named once at least 5 people share it (k_min_users), so "
        "that a label never describes only a few people, and only by a phrase its threads "
        "share that says what it is about")
EXACT_NOTE = ("unlabelled: a topic is named once at least k_min_users people (privacy.toml) "
              "share it, so that a label never describes only a few people, and only by a "
              "phrase its threads share that says what it is about")


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

    run_on_copy(fixed_store, scenario, clock=lambda: CLOCK, embedder=embedder)
    assert seen["cell"] == "tp_sql · unlabelled"
    assert NOTE in seen["status"], seen["status"]  # the screen says why, as stats does


def test_a_count_that_cannot_be_told_from_zero_reads_as_its_bound_in_stats_and_the_tui(
        fixed_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        embedder: Any) -> None:
    """A topic shown by the release (its noisy count of people reached k) may hold a true
    handful of threads, or none kept: `stats topics` and the topics screen printed its
    noisy count as `20±37`, read as "20 threads". A count whose 95% interval reaches zero
    now reads `<58`, the top of that interval, on both; one clear of zero keeps `63±3`
    (today's release of the default window, stored in the fixed store's SQLCipher)."""
    import shutil
    from datetime import UTC, datetime

    from appliance import analytics
    from appliance.cli import main
    from appliance.keys import read_key_file
    from appliance.privacy import Figure, GroupFigures, Release
    from appliance.releases import ReleaseCache
    from appliance.runtime import open_runtime
    from appliance.tui.app import make_app

    copy = tmp_path / "fixed"
    shutil.copytree(fixed_store, copy)
    now = datetime.now(UTC)
    start, end = analytics.default_window(now)
    rt = open_runtime(copy / "data", read_key_file(copy / "key"))
    bound = rt.policies.pricing.thread_cost_bound
    groups = (GroupFigures("tp_travel", Figure(63.0, 0.9, False), {}, Figure(20.0, 0.9, False)),
              GroupFigures("tp_sql", Figure(20.0, 12.5, False), {}, Figure(6.0, 16.0, False)))
    ReleaseCache(rt.store.db).put("acme", analytics.group_key("topics", start, end,
                                                              cost_bound=bound),
                                  f"{now:%Y-%m-%d}",
                                  Release(groups=groups, exact=False, epsilon=2.0,
                                          k_min_users=5, released_at=now.timestamp()))
    rt.close()

    main(["stats", "topics", "--data-dir", str(copy / "data"), "--key-file",
          str(copy / "key"), "--tenant", "acme"])
    text = capsys.readouterr().out
    rows = {line.split()[0]: line for line in text.splitlines() if "tp_" in line}
    assert "threads <58  people <54" in rows["tp_sql"], text  # 20 + 37.4, 6 + 47.9
    assert "threads 63±3  people 20±3" in rows["tp_travel"], text
    assert "<N a count whose interval reaches 0 (N its top)" in " ".join(text.split()), text
    main(["stats", "topics", "--data-dir", str(copy / "data"), "--key-file",
          str(copy / "key"), "--tenant", "acme", "--json"])
    sql = next(r for r in json.loads(capsys.readouterr().out)["rows"] if r["key"] == "tp_sql")
    assert sql["threads"]["value"] == 20.0  # --json keeps the noisy value and its interval

    seen: dict[str, str] = {}

    async def scenario(pilot: Any) -> None:
        await pilot.press("o")
        await settle(pilot)
        table = pilot.app.screen.query_one("#topics")
        seen["sql"] = " ".join(str(table.get_cell("acme\0tp_sql", c)) for c in
                               ("threads", "users"))
        seen["travel"] = str(table.get_cell("acme\0tp_travel", "threads"))
        seen["head"] = str(pilot.app.screen.query_one("#topics-head").render())

    rt = open_runtime(copy / "data", read_key_file(copy / "key"), readonly=True)
    try:
        run(make_app(rt, role="analyst", clock=lambda: now, refresh_seconds=3600,
                     embedder_factory=lambda: embedder), scenario, size=(220, 30))
    finally:
        rt.close()
    assert seen["sql"] == "<58 <54" and seen["travel"] == "63±3", seen  # as stats prints
    assert "<N: a count whose interval reaches 0, N its top" in seen["head"], seen["head"]
