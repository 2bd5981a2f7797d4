"""The service makes each tenant's daily DP releases itself: the day's first query reads one."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_service import Server, at
from test_spine import run_cli

from appliance.client import Client

TEXTS = ("How do I book a hotel room in the city centre?",
         "Which hotel near the station has free parking?",
         "Can I cancel my hotel booking without a fee?")


def _stats(srv: Server, kind: str) -> dict[str, object]:
    out = run_cli("stats", kind, "--tenant", "acme", "--json", *srv.args,
                  env={"SEMTRACE_POLICY_DIR": srv.env["SEMTRACE_POLICY_DIR"]})
    assert out.returncode == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


def _released(srv: Server, timeout: float = 120) -> list[int]:
    """Releases made by each daily run the service logged so far (waits for this start's)."""
    deadline = time.monotonic() + timeout
    starts = srv.log.read_text().count('"event": "start"')
    while time.monotonic() < deadline:
        runs = [json.loads(x) for x in srv.log.read_text().splitlines()
                if '"event": "daily_releases"' in x]
        if len(runs) >= starts:
            return [int(r["released"]) for r in runs]
        time.sleep(0.2)
    raise AssertionError("the service made no daily releases")


def test_the_service_releases_each_day_so_the_first_query_spends_nothing(
        tmp_path: Path, passphrase_file: Path) -> None:
    srv = Server(tmp_path, passphrase_file).start()
    # the start-up jobs run beside the first requests: on a loaded host the first start's
    # release came after the first prompts and released them (then [2, 0], not [0, 2])
    assert _released(srv) == [0]
    with Client(srv.sock) as c:
        for u in range(8):
            for i, text in enumerate(TEXTS):
                r = c.ingest(tenant="acme", user_id=f"traveller{u}", text=text,
                             request_id=f"d-{u}-{i}", ts=at(10 * u + i))
                assert r["ok"], r
    assert srv.stop() == 0
    # a restart runs the start-up jobs: retention, then today's releases for every tenant
    srv.start()
    assert _released(srv) == [0, 2]  # nothing at the first start, topics + models now
    assert srv.stop() == 0

    topics = _stats(srv, "topics")
    assert topics["cached"] is True and topics["epsilon"] == 0.0
    assert float(topics["release_age_s"]) > 0  # type: ignore[arg-type]
    # the service spent the tenant's budget on two releases, once: topics (2 of the
    # day's 4, release_epsilon in privacy.toml) and models (1)
    assert topics["budget_remaining"] == pytest.approx(1.0)
    models = _stats(srv, "models")
    assert models["cached"] is True and models["epsilon"] == 0.0
    assert models["released_at"] == _stats(srv, "models")["released_at"]

    # a second start the same day finds the releases made and spends nothing more
    srv.start()
    assert _released(srv) == [0, 2, 0]
    assert srv.stop() == 0
    again = _stats(srv, "topics")
    assert again["released_at"] == topics["released_at"]
    assert again["budget_remaining"] == pytest.approx(1.0)


def test_a_release_schedule_that_is_not_a_crontab_is_refused(
        tmp_path: Path, passphrase_file: Path) -> None:
    srv = Server(tmp_path, passphrase_file)
    privacy = Path(srv.env["SEMTRACE_POLICY_DIR"]) / "privacy.toml"
    privacy.write_text(privacy.read_text().replace('release_cron = "5 0 * * *"',
                                                   'release_cron = "every night"'))
    out = run_cli("serve", "--check", *srv.args,
                  env={"SEMTRACE_POLICY_DIR": srv.env["SEMTRACE_POLICY_DIR"]})
    assert out.returncode != 0
    assert "release_cron 'every night' is not a crontab expression" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(("line", "said"), [
    ("topic = 2.0", "'topic' is no kind of release"),
    ("topics = 5.0", "topics = 5 must be above 0 and at most epsilon_per_day (4)"),
])
def test_a_release_epsilon_that_could_never_be_spent_is_refused(
        tmp_path: Path, passphrase_file: Path, line: str, said: str) -> None:
    srv = Server(tmp_path, passphrase_file)
    privacy = Path(srv.env["SEMTRACE_POLICY_DIR"]) / "privacy.toml"
    privacy.write_text(privacy.read_text().replace("topics = 2.0", line))
    out = run_cli("serve", "--check", *srv.args,
                  env={"SEMTRACE_POLICY_DIR": srv.env["SEMTRACE_POLICY_DIR"]})
    assert out.returncode != 0 and said in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
