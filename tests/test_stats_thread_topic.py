"""`semtrace stats` counts a thread under the topic the last refinement put it in.

A refinement re-clusters every live thread; a thread it moves to another topic whose
own id lives on (not merged) has its new topic in the threads table, which `threads list
--topic` and the screens read. `stats topics`, `stats blocks` and `stats incident` read the
topic each prompt was handed at ingest (its first turn's, through the merges), so they
counted such a thread under its old topic: on the bench week replayed through the whole
pipeline, 349 of 932 threads (bench/linker_week.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_stats import WINDOW, fill, policies_with

from appliance.topics.tables import TopicRow, publish


@pytest.fixture
def filled(runtime: Any, embedder: Any, redactor: Any) -> Any:
    """Six users' weather and password threads (the password one ends blocked)."""
    return fill(runtime, embedder, redactor)


@pytest.fixture
def generous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Noise of a fraction of a thread and k = 2: every topic of the six people shown."""
    policies_with(tmp_path, monkeypatch, epsilon_per_day=10000.0, epsilon_per_release=1000.0,
                  topics=1000.0, blocks=1000.0, k_min_users=2)


def run(cli_runner: Any, data_dir: Path, passphrase_file: Path, *args: str) -> Any:
    from appliance.cli import cli

    result = cli_runner.invoke(cli, [*args, "--data-dir", str(data_dir), "--passphrase-file",
                                     str(passphrase_file), "--tenant", "acme", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def per_topic(report: dict[str, Any]) -> dict[str, float]:
    return {r["key"]: round(r["threads"]["value"]) for r in report["rows"]}


def test_stats_count_a_thread_under_the_topic_a_refinement_moved_it_to(
        filled: Any, generous: None, cli_runner: Any, data_dir: Path,
        passphrase_file: Path) -> None:
    """Two people's password threads (each ending blocked) are moved by a refinement into
    the weather topic, both topics living on: `threads list --topic` lists them under
    weather, and every stats command counts them there too."""
    rt = filled
    db = rt.store.db
    blocked = db.execute("SELECT topic_id, thread_id FROM records WHERE tenant='acme' AND "
                         "status='blocked' ORDER BY thread_id").fetchall()
    password, moved = blocked[0][0], [t for _, t in blocked[:2]]
    (weather,) = db.execute("SELECT DISTINCT topic_id FROM records WHERE tenant='acme' AND "
                            "topic_id != ?", (password,)).fetchone()
    publish(db, "acme", [TopicRow(weather, "", 8, 6, None, (), 0.0),  # the refinement
                         TopicRow(password, "", 4, 4, None, (), 0.0)], {},
            [(t, weather) for t in moved])
    listed = run(cli_runner, data_dir, passphrase_file, "threads", "list", "--topic", weather)
    assert set(moved) <= {t["thread_id"] for t in listed}  # what the threads screen shows

    topics = run(cli_runner, data_dir, passphrase_file, "stats", "topics", *WINDOW)
    assert per_topic(topics) == {weather: 8, password: 4}  # was 6 and 6
    blocks = run(cli_runner, data_dir, passphrase_file, "stats", "blocks", *WINDOW)
    assert per_topic(blocks) == {weather: 2, password: 4}  # was no weather row, 6
    incident = run(cli_runner, data_dir, passphrase_file, "stats", "incident", *WINDOW,
                   "--baseline-from", "2026-02-01", "--baseline-to", "2026-02-05")
    prompts = {r["key"]: round(r["window"]["value"]) for r in incident["rows"]
               if r["dimension"] == "topic"}
    assert prompts == {weather: 16, password: 8}  # was 12 and 12
