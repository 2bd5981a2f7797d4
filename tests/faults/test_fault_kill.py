"""kill -9 of the service mid-batch, mid-shred and mid-migration, and of a key rotation: no
acknowledged record is lost and the store opens cleanly. A short, bounded set;
bench/faults.py runs 100 rounds."""

from __future__ import annotations

import json
import random
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from harness import Service, integrity, kill_round, missing, rotation_round, run_cli

from appliance.client import Client


@pytest.mark.slow
def test_kill_9_at_a_commit_and_at_a_random_moment_loses_no_acknowledged_record(
        tmp_path: Path) -> None:
    rng = random.Random(14)
    svc = Service(tmp_path)
    rounds = [kill_round(svc, rng=rng, tag="c", failpoint=f"batch.commit:{rng.randrange(3, 9)}"),
              kill_round(svc, rng=rng, tag="r")]
    assert all(r["faults"] == 1 for r in rounds), rounds  # each round really was killed
    assert sum(r["acked"] for r in rounds) > 0
    assert [r["lost"] for r in rounds] == [0, 0] and [r["crashes"] for r in rounds] == [0, 0]
    assert integrity(svc) == []


def _stream(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_kill_9_mid_shred_is_finished_at_the_next_start(tmp_path: Path) -> None:
    svc = Service(tmp_path)
    old = (datetime.now(UTC) - timedelta(days=60)).isoformat()
    rows = [{"tenant": "acme", "user_id": f"u{i % 3}", "request_id": f"old-{i}", "ts": old,
             "text": f"Old question {i} about the archive"} for i in range(6)]
    rows += [{"tenant": "acme", "user_id": f"u{i % 3}", "request_id": f"new-{i}",
              "ts": (datetime.now(UTC) - timedelta(hours=3)).isoformat(),
              "text": f"Recent question {i} about the printer"} for i in range(6)]
    replay = run_cli("replay", str(_stream(tmp_path / "in.jsonl", rows)), "--out",
                     str(tmp_path / "out.jsonl"), *svc.args, env=svc.env)
    assert replay.returncode == 0, replay.stderr
    try:
        svc.start(failpoint="shred.keys_destroyed:1")  # the start-up retention run shreds
        assert svc.proc is not None and svc.proc.wait(timeout=300) == -signal.SIGKILL
        svc.start()
        assert svc.alive(), svc.log.read_text()[-2000:]
        new = {f"new-{i}" for i in range(6)}
        assert missing(svc.sock, new) == []
        assert sorted(missing(svc.sock, {f"old-{i}" for i in range(6)})) == sorted(
            f"old-{i}" for i in range(6))
        with Client(svc.sock) as c:
            assert c.request({"v": 1, "op": "stats"})["store"]["records"] == 6
        assert svc.stop() == 0
    finally:
        svc.kill()
    assert integrity(svc) == []


@pytest.mark.slow
@pytest.mark.parametrize("step", [1, 3, 7])
def test_kill_9_mid_migration_leaves_a_store_the_next_start_opens(tmp_path: Path,
                                                                  step: int) -> None:
    svc_dir = tmp_path / "data"
    pw = tmp_path / "passphrase"
    pw.touch(mode=0o600)
    pw.write_text("fault suite passphrase\n")
    args = ["--data-dir", str(svc_dir), "--passphrase-file", str(pw)]
    killed = run_cli("init", *args, env={"SEMTRACE_FAILPOINT": f"migration:{step}"})
    assert killed.returncode == -signal.SIGKILL
    check = run_cli("serve", "--check", "--json", *args)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["ok"] is True
    svc = Service(tmp_path, svc_dir).start()
    try:
        with Client(svc.sock) as c:
            r = c.request({"v": 1, "op": "ingest", "tenant": "acme", "user_id": "u",
                           "request_id": "after", "text": "Does it work after the crash?",
                           "ts": datetime.now(UTC).isoformat()})
            assert r["ok"], r
        assert svc.stop() == 0
    finally:
        svc.kill()


@pytest.mark.slow
@pytest.mark.parametrize("step,reopen_with_new", [(4, True), (9, False)])
def test_kill_9_mid_rotation_keeps_every_acknowledged_record_served(
        tmp_path: Path, step: int, reopen_with_new: bool) -> None:
    from appliance.store.rotation import STEPS

    out = rotation_round(Service(tmp_path), rng=random.Random(step), tag=f"rot{step}",
                         step=step, reopen_with_new=reopen_with_new)
    assert out["faults"] == 1 and out["acked"] > 0, out
    assert out["lost"] == 0 and out["crashes"] == 0, out
    # the old passphrase still completes a rotation killed before its last step
    assert out["refused_old"] == int(STEPS[step - 1] == "finish" and not reopen_with_new)
