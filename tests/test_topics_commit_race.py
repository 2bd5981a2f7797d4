"""A refinement that moves a thread to another topic while a prompt of that thread is on its
way to the store (assigned, not yet committed): the commit wrote the prompt's older topic
over the refinement's into the thread's row, and no later refinement wrote it again (the
topics in memory already had the thread in its new topic), so `threads list --topic`, the
threads screen's topic filter, counted the thread under its old topic for good."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import make_prompt
from test_stats import session_linker

from appliance.topics import TopicAssigner, tables


def listed(cli_runner: Any, data_dir: Path, passphrase_file: Path, topic: str) -> list[str]:
    from appliance.cli import cli

    result = cli_runner.invoke(cli, ["threads", "list", "--data-dir", str(data_dir),
                                     "--passphrase-file", str(passphrase_file), "--tenant",
                                     "acme", "--topic", topic, "--json"])
    assert result.exit_code == 0, result.output
    return [t["thread_id"] for t in json.loads(result.output)]


def test_a_thread_a_refinement_moved_while_its_prompt_was_committed_stays_in_its_new_topic(
        runtime: Any, embedder: Any, redactor: Any, cli_runner: Any, data_dir: Path,
        passphrase_file: Path, monkeypatch: Any) -> None:
    from appliance.index import VectorIndex
    from appliance.pipeline import Pipeline

    ta = TopicAssigner(runtime.store, runtime.policies.privacy)
    pipe = Pipeline(store=runtime.store, index=VectorIndex(embedder.dims),
                    keyring=runtime.keyring, redactor=redactor, embedder=embedder,
                    linker=session_linker, policies=runtime.policies, topics=ta)
    (first,) = pipe.process([make_prompt("How do I reset my account password?",
                                         session_id="s1", minutes=0)])
    (other,) = pipe.process([make_prompt("What's the weather forecast for tomorrow?",
                                         session_id="s2", minutes=1)])
    thread, was = first.thread_id, ta.thread_topic("acme", first.thread_id)
    moved_to = ta.thread_topic("acme", other.thread_id)
    assert was and moved_to and was != moved_to
    real = runtime.store.insert

    def refinement_then_commit(*args: Any, **kw: Any) -> None:
        # the background refinement lands between the prompt's assignment and its commit:
        # install (in memory, under the assigner's lock), then publish (what refine does)
        with ta._lock:
            ta._tenants["acme"].units[thread].topic = moved_to
        rows = [tables.TopicRow(t, "", 1, 1, None, (), 0.0) for t in (was, moved_to)]
        tables.publish(ta._store.side_connection(), "acme", rows, {}, [(thread, moved_to)])
        monkeypatch.setattr(runtime.store, "insert", real)
        real(*args, **kw)

    monkeypatch.setattr(runtime.store, "insert", refinement_then_commit)
    (second,) = pipe.process([make_prompt("It says the reset link expired.", session_id="s1",
                                          minutes=2)])
    assert second.thread_id == thread
    assert thread in listed(cli_runner, data_dir, passphrase_file, moved_to)
    assert thread not in listed(cli_runner, data_dir, passphrase_file, was)
