"""`semtrace eval threads` and the metrics behind it."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_BENCH, write_stream
from test_spine import run_cli

SCORER = SHARED_BENCH / "score_threads.py"
DEV = SHARED_BENCH / "threads-dev.jsonl"

SMALL = [
    {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:00:00Z",
     "text": "What's the weather in Paris?", "gold_thread_id": "a1", "gold_parent_index": None,
     "gold_topic_id": "weather", "source": "handmade"},
    {"tenant": "acme", "user_id": "bob", "ts": "2026-03-02T09:00:20Z",
     "text": "How do I reset my password?", "gold_thread_id": "b1", "gold_parent_index": None,
     "gold_topic_id": "it", "source": "handmade"},
    {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:01:00Z",
     "text": "How about tomorrow?", "gold_thread_id": "a1", "gold_parent_index": 0,
     "gold_topic_id": "weather", "source": "handmade"},
    {"tenant": "acme", "user_id": "bob", "ts": "2026-03-02T09:01:30Z",
     "text": "It says my token expired.", "gold_thread_id": "b1", "gold_parent_index": 1,
     "gold_topic_id": "it", "source": "other"},
    {"tenant": "acme", "user_id": "alice", "ts": "2026-03-05T10:00:00Z",
     "text": "Recommend a novel about the sea.", "gold_thread_id": "a2",
     "gold_parent_index": None, "gold_topic_id": None, "source": "other"},
]


def _scorer(gold: Path, pred: Path, python: str) -> dict[str, object]:
    out = subprocess.run([python, str(SCORER), str(gold), str(pred), "--by-source"],
                         capture_output=True, text=True, check=True, timeout=300)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _noisy_predictions(gold: list[dict[str, object]], seed: int) -> list[dict[str, object]]:
    """Gap-rule threads with some parents moved, one cross-user link, one missing row."""
    from appliance.evaluate import gap_baseline

    rng = random.Random(seed)
    pred = gap_baseline(gold, minutes=10)
    rows = []
    for i, p in sorted(pred.items()):
        row = dict(p)
        if rng.random() < 0.1 and i > 0:
            row["parent_index"] = rng.randrange(0, i)
        row["topic_id"] = None if rng.random() < 0.2 else f"k{rng.randrange(5)}"
        rows.append(row)
    rows[-1]["parent_index"] = rows[-1]["index"] + 5  # invalid: a later prompt
    return rows[:-2] + rows[-1:]  # one prediction missing


def _assert_same(ours: dict[str, object], theirs: dict[str, object]) -> None:
    for key, value in theirs.items():
        if key in ("unknown_pred_indices", "duplicate_pred_indices", "ari_impl", "by_source"):
            continue
        if isinstance(value, float):
            assert ours[key] == pytest.approx(value, abs=1e-4), key
        else:
            assert ours[key] == value, key


@pytest.mark.skipif(not SCORER.exists(), reason="the evaluators' scorer is not present")
@pytest.mark.parametrize("gold_name", ["small", "dev"])
def test_metrics_agree_with_the_evaluators_scorer(tmp_path: Path, gold_name: str) -> None:
    from appliance.evaluate import score_all

    if gold_name == "dev" and not DEV.exists():
        pytest.skip("the dev stream is not present")
    gold_path = DEV if gold_name == "dev" else write_stream(tmp_path / "gold.jsonl", SMALL)
    gold = [json.loads(line) for line in gold_path.read_text().splitlines() if line.strip()]
    rows = _noisy_predictions(gold, seed=7)
    pred_path = tmp_path / "pred.jsonl"
    pred_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ours = score_all(gold, {int(r["index"]): r for r in rows}, by_source=True)  # type: ignore[call-overload]
    pythons = {sys.executable, shutil.which("python3") or sys.executable}
    for python in pythons:  # with and without scikit-learn's ARI
        theirs = _scorer(gold_path, pred_path, python)
        _assert_same(ours, theirs)
        for src, scores in theirs["by_source"].items():  # type: ignore[attr-defined]
            _assert_same(ours["by_source"][src], scores)


def test_eval_threads_scores_the_linker_beside_both_baselines(tmp_path: Path) -> None:
    gold = write_stream(tmp_path / "gold.jsonl", SMALL)
    result = run_cli("eval", "threads", str(gold), "--by-source", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"linker", "gap_30min", "cosine_0.75_24h", "replay"}
    assert data["replay"]["ingested"] == len(SMALL)
    for system in ("linker", "gap_30min", "cosine_0.75_24h"):
        assert data[system]["cross_user_links"] == 0
        assert data[system]["missing_predictions"] == 0
        assert set(data[system]["by_source"]) == {"handmade", "other"}
    assert data["linker"]["pair_F1"] == 1.0  # both follow-ups join, the sea novel does not
    table = run_cli("eval", "threads", str(gold))
    assert table.returncode == 0, table.stderr
    assert "gap_30min" in table.stdout and "pair_F1" in table.stdout


def test_eval_threads_refuses_a_stream_without_gold(tmp_path: Path) -> None:
    stream = write_stream(tmp_path / "plain.jsonl", [
        {"tenant": "acme", "user_id": "a", "ts": "2026-03-02T09:00:00Z", "text": "hi"}])
    result = run_cli("eval", "threads", str(stream))
    assert result.returncode != 0
    assert "line 1 is not a gold row" in result.stderr
    assert "Traceback" not in result.stderr
