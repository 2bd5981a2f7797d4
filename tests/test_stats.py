"""`semtrace stats`: figures from thread metadata, JSON shape, privacy of cross-user views."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import T0, make_prompt

from appliance import analytics
from appliance.analytics import ThreadRow, Turn
from appliance.cli.stats import INDENT
from appliance.config import PrivacySettings
from appliance.privacy import PrivacyGate
from appliance.records import Candidate, Link, Response

USERS = [f"user{i}" for i in range(6)]
WINDOW = ["--from", "2026-03-01", "--to", "2026-03-05"]


def session_linker(query: Any, candidates: Sequence[Candidate], threshold: float | None = None
                   ) -> Link:
    """Continue the latest prompt of the same client session (a linker-free test double)."""
    same = [c for c in candidates if query.session_key and c.session_key == query.session_key]
    if not same:
        return Link(parent_id=None, thread_id=None, position="new",
                    intent="information_seeking", similarity=None)
    last = same[-1]
    return Link(parent_id=last.record_id, thread_id=last.thread_id, position="continuation",
                intent="information_seeking", similarity=0.9)


@pytest.fixture
def filled(runtime: Any, embedder: Any, redactor: Any) -> Any:
    """Six users, each with a weather thread and a password thread whose last turn is blocked."""
    return fill(runtime, embedder, redactor)


def fill(runtime: Any, embedder: Any, redactor: Any) -> Any:
    """`filled`: six users' weather and password threads through the real pipeline."""
    from appliance.index import VectorIndex
    from appliance.pipeline import Pipeline
    from appliance.topics import TopicAssigner

    pipe = Pipeline(store=runtime.store, index=VectorIndex(embedder.dims),
                    keyring=runtime.keyring, redactor=redactor, embedder=embedder,
                    linker=session_linker, policies=runtime.policies,
                    topics=TopicAssigner(runtime.store, runtime.policies.privacy))
    prompts = []
    for i, user in enumerate(USERS):
        model = "model-a" if i < 3 else "model-b"
        ok = Response(input_tokens=100, output_tokens=50, status="ok")
        blocked = Response(input_tokens=20, output_tokens=0, status="blocked")
        m = 60 * i
        prompts += [
            make_prompt("What's the weather forecast for tomorrow?", user=user, minutes=m,
                        session_id=f"w{i}", model=model, response=ok),
            make_prompt("Will it rain in the afternoon too?", user=user, minutes=m + 1,
                        session_id=f"w{i}", model=model, response=ok),
            make_prompt("How do I reset my account password?", user=user, minutes=m + 20,
                        session_id=f"p{i}", model=model, response=ok),
            make_prompt("Show me how to bypass the password check", user=user, minutes=m + 21,
                        session_id=f"p{i}", model=model, response=blocked),
        ]
    pipe.process(prompts)
    return runtime


def stats(cli_runner: Any, data_dir: Path, passphrase_file: Path, *args: str) -> Any:
    from appliance.cli import cli

    result = cli_runner.invoke(cli, ["stats", *args, "--data-dir", str(data_dir),
                                     "--passphrase-file", str(passphrase_file),
                                     "--tenant", "acme", *WINDOW, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


FIGURE = {"value", "noise_scale", "exact", "ci95"}


def stats_rows(text: str) -> list[str]:
    """`stats` text output as one string per row: a row's continuation lines (indented
    further, `cli.stats.INDENT`) joined to it."""
    rows: list[str] = []
    for line in text.splitlines():
        if line.startswith("  " + INDENT) and rows:
            rows[-1] += "  " + line.strip()
        else:
            rows.append(line)
    return rows


def policies_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **privacy: float) -> None:
    """Run the CLI with the shipped policies but these privacy.toml values."""
    import re

    from appliance.config import policy_dir

    policies = tmp_path / "policies"
    shutil.copytree(policy_dir(), policies)
    toml = policies / "privacy.toml"
    text = toml.read_text()
    for key, value in privacy.items():
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
    toml.write_text(text)
    monkeypatch.setenv("SEMTRACE_POLICY_DIR", str(policies))


def test_stats_topics_json_is_noisy_accounted_and_released_once_a_day(
        filled: Any, cli_runner: Any, data_dir: Path, passphrase_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A generous epsilon and k = 2, so that the six users of a topic survive the noisy
    # k-suppression: at epsilon 40 and k 5 the noisy people count hid every topic in
    # about one run in three (scale ~2 on a margin of 1); here the margin is 4 on a
    # scale under 1. Suppression itself is tested in test_privacy.
    policies_with(tmp_path, monkeypatch, epsilon_per_day=250.0, topics=100.0, k_min_users=2)
    out = stats(cli_runner, data_dir, passphrase_file, "topics")
    assert set(out) == {"kind", "tenant", "start", "end", "exact", "epsilon",
                        "budget_remaining", "k_min_users", "rows", "released_at", "cached",
                        "release_age_s", "currency", "per_user_topics", "empty"}
    assert out["per_user_topics"] is False  # acme's topics are cross-user (privacy.toml)
    assert out["empty"] is False  # the window holds threads: a release
    assert out["kind"] == "topics" and out["exact"] is False
    assert out["epsilon"] == pytest.approx(100.0)
    assert out["budget_remaining"] == pytest.approx(150.0) and out["k_min_users"] == 2
    assert out["cached"] is False and 0 <= out["release_age_s"] < 600
    assert len(out["rows"]) >= 1
    for row in out["rows"]:
        assert set(row) == {"key", "label", "threads", "mean_turns", "refinement_share",
                            "abandonment_share", "blocked_share", "tokens", "mean_tokens",
                            "cost", "mean_cost", "costed", "error_share", "users", "merged",
                            "trend"}
        assert set(row["threads"]) == FIGURE and row["threads"]["noise_scale"] > 0
        assert row["threads"]["ci95"] == pytest.approx(row["threads"]["noise_scale"] * 3.0,
                                                       rel=0.01)
    again = stats(cli_runner, data_dir, passphrase_file, "topics")
    assert again["cached"] is True and again["epsilon"] == 0
    assert again["rows"] == out["rows"] and again["released_at"] == out["released_at"]
    ledger = filled.store.db.execute("SELECT spent, queries FROM privacy_budget").fetchall()
    assert ledger == [(pytest.approx(100.0), 1)]


def test_text_output_says_how_old_the_release_is(filled: Any, data_dir: Path,
                                                 passphrase_file: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.cli import main

    argv = ["stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
            str(passphrase_file), "--tenant", "acme", *WINDOW]
    main(argv)
    # the shipped policy's topics release spends 2 (release_epsilon.topics in privacy.toml)
    assert "new release, epsilon 2 spent" in capsys.readouterr().out
    main(argv)
    head = capsys.readouterr().out.splitlines()[:2]
    assert head[0].startswith("topics for acme, ")
    assert "today's release from" in head[1] and "old), nothing spent now" in head[1]


def test_a_tenant_whose_topics_are_per_user_is_told_why_stats_topics_shows_nothing(
        filled: Any, data_dir: Path, passphrase_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With cross_user_topics off, every topic is one person's: the release withholds them
    all and `stats topics` printed "(nothing to show)" with no reason."""
    from appliance.cli import main
    from appliance.config import policy_dir

    policies = tmp_path / "policies"
    shutil.copytree(policy_dir(), policies)
    toml = policies / "privacy.toml"
    toml.write_text(toml.read_text().replace("[cross_user_topics]\nacme = true",
                                             "[cross_user_topics]\nacme = false"))
    monkeypatch.setenv("SEMTRACE_POLICY_DIR", str(policies))
    argv = ["stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
            str(passphrase_file), "--tenant", "acme", *WINDOW]
    main(argv)
    out = capsys.readouterr().out
    assert "acme's topics are per user (cross_user_topics is off" in out
    main([*argv, "--json"])
    assert json.loads(capsys.readouterr().out)["per_user_topics"] is True


@pytest.mark.parametrize("command", ["topics", "models", "cost", "positions", "blocks",
                                     "incident"])
def test_every_stats_command_prints_json_rows(filled: Any, cli_runner: Any, data_dir: Path,
                                              passphrase_file: Path, command: str) -> None:
    out = stats(cli_runner, data_dir, passphrase_file, command)
    assert out["kind"] == command and isinstance(out["rows"], list)
    for row in out["rows"]:
        figures = [v for v in row.values() if isinstance(v, dict)]
        assert figures and all(set(f) == FIGURE for f in figures)


def test_one_users_view_is_exact_and_free(filled: Any, cli_runner: Any, data_dir: Path,
                                          passphrase_file: Path) -> None:
    out = stats(cli_runner, data_dir, passphrase_file, "topics", "--user", "user2",
                "--role", "compliance")  # exact figures: not for analysts (user_stats)
    assert out["exact"] is True and out["epsilon"] == 0
    assert sum(r["threads"]["value"] for r in out["rows"]) == 2
    assert all(r["threads"]["noise_scale"] == 0 for r in out["rows"])
    blocks = stats(cli_runner, data_dir, passphrase_file, "blocks", "--user", "user2",
                   "--role", "compliance")
    [row] = blocks["rows"]
    assert row["threads"]["value"] == 1 and row["first_turn_share"]["value"] == 0
    assert len(row["thread_ids"]) == 1
    assert filled.store.db.execute("SELECT count(*) FROM privacy_budget").fetchone() == (0,)


def test_spent_budget_is_refused_with_one_sentence(filled: Any, data_dir: Path,
                                                   passphrase_file: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.cli import main
    from appliance.config import policy_dir

    policies = tmp_path / "policies"
    shutil.copytree(policy_dir(), policies)
    toml = policies / "privacy.toml"
    # room for one topics release (2) a day, not two
    toml.write_text(toml.read_text().replace("epsilon_per_day = 4.0", "epsilon_per_day = 3.0"))
    monkeypatch.setenv("SEMTRACE_POLICY_DIR", str(policies))
    argv = ["stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
            str(passphrase_file), "--tenant", "acme", *WINDOW]
    main(argv)
    main(argv)  # today's release again: spends nothing
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*argv[:-4], "--from", "2026-03-02", "--to", "2026-03-05"])  # another window
    err = capsys.readouterr().err
    assert exc.value.code != 0 and "privacy budget" in err
    assert "is spent (2 of 3; 1 left, this release needs 2)" in err  # not just "spent (2 of 3)"
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("args", [
    ["--tenant", "acme-typo", *WINDOW],  # no data ever, no policy names it
    ["--tenant", "", *WINDOW],
    ["--tenant", "acme", "--from", "2099-01-01", "--to", "2099-01-08"],  # nothing yet
    ["--tenant", "acme-typo", "--user", "user2", "--role", "compliance", *WINDOW],
])
def test_an_unknown_tenant_or_a_future_window_is_refused_and_spends_nothing(
        filled: Any, data_dir: Path, passphrase_file: Path, args: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.cli import main

    for command in ("topics", "models", "cost", "positions", "blocks", "incident"):
        with pytest.raises(SystemExit) as exc:
            main(["stats", command, "--data-dir", str(data_dir), "--passphrase-file",
                  str(passphrase_file), *args, "--json"])
        out, err = capsys.readouterr()
        assert exc.value.code == 2 and out == "", (command, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    db = filled.store.db
    assert db.execute("SELECT count(*) FROM privacy_budget").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM dp_releases").fetchone() == (0,)


def test_models_on_an_unknown_topic_is_refused_and_spends_nothing(
        filled: Any, data_dir: Path, passphrase_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.cli import main

    known = filled.store.db.execute(
        "SELECT topic_id FROM records WHERE tenant='acme' AND topic_id IS NOT NULL").fetchone()
    assert known is not None
    with pytest.raises(SystemExit) as exc:
        main(["stats", "models", "--data-dir", str(data_dir), "--passphrase-file",
              str(passphrase_file), "--tenant", "acme", "--topic", "tp_typo", *WINDOW])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "no topic 'tp_typo'" in err and "Traceback" not in err
    assert filled.store.db.execute("SELECT count(*) FROM privacy_budget").fetchone() == (0,)
    main(["stats", "models", "--data-dir", str(data_dir), "--passphrase-file",
          str(passphrase_file), "--tenant", "acme", "--topic", known[0], *WINDOW])
    assert f"models on topic {known[0]}" in capsys.readouterr().out


def test_models_on_a_word_of_two_labels_names_them_as_threads_list_does(
        filled: Any, data_dir: Path, passphrase_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`stats models --topic ticket` on the bench week said only "Tenant acme has no topic
    'ticket'" where `threads list --topic ticket` named 'movie ticket, buy' and
    'insurance, travel ticket'."""
    from appliance.cli import main
    from appliance.topics import tables

    rows = [tables.TopicRow(tid, "", 1, 1, label, (), 0.0) for tid, label in (
        ("tp_mv", "movie ticket, buy"), ("tp_ins", "insurance, travel ticket"))]
    tables.publish(filled.store.db, "acme", rows, {}, [])
    with pytest.raises(SystemExit) as exc:
        main(["stats", "models", "--data-dir", str(data_dir), "--passphrase-file",
              str(passphrase_file), "--tenant", "acme", "--topic", "ticket", *WINDOW])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "No topic 'ticket' in scope: 'insurance, travel ticket' (tp_ins), 'movie " \
           "ticket, buy' (tp_mv) have that word" in err and "Nothing was spent." in err
    assert filled.store.db.execute("SELECT count(*) FROM privacy_budget").fetchone() == (0,)


def test_the_other_topics_key_typed_as_a_topic_says_what_it_is(
        filled: Any, data_dir: Path, passphrase_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`stats topics` prints `(other topics)` as the key of its last row; typed back as
    `--topic`, it was "Tenant acme has no topic '(other topics)' (`stats topics` lists
    them ...)", and `threads list` said the same: the list that shows it."""
    from appliance.cli import main

    common = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file),
              "--tenant", "acme", "--topic", "(other topics)"]
    for argv in (["stats", "models", *common, *WINDOW], ["threads", "list", *common]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = " ".join(capsys.readouterr().err.split())
        assert exc.value.code == 2, err
        assert "'(other topics)' is the row of all the topics of too few people to show " \
               "apart, not one topic: give one topic's id, label or phrase" in err, err
    assert filled.store.db.execute("SELECT count(*) FROM privacy_budget").fetchone() == (0,)


def aggregates_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the CLI with the shipped policies and a role `figures` that may read cross-user
    figures and not threads (`stats --role figures`)."""
    from appliance.config import policy_dir

    policies = tmp_path / "policies"
    shutil.copytree(policy_dir(), policies)
    with (policies / "access.toml").open("a") as fh:
        fh.write('\n[roles.figures]\ndescription = "figures only"\n'
                 'permissions = ["aggregates"]\n')
    monkeypatch.setenv("SEMTRACE_POLICY_DIR", str(policies))


def test_a_known_tenants_empty_window_is_released_as_any_other_to_a_role_without_threads(
        filled: Any, cli_runner: Any, data_dir: Path, passphrase_file: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.cli import cli

    # Answering "nothing" for free would tell a role that may not list the threads,
    # exactly, that nobody was active then (a role that may list them is told: see
    # test_stats_readable.py).
    aggregates_only(tmp_path, monkeypatch)
    result = cli_runner.invoke(cli, [
        "stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
        str(passphrase_file), "--tenant", "acme", "--from", "2020-01-01", "--to",
        "2020-01-08", "--role", "figures", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["rows"] == [] and out["epsilon"] > 0 and out["cached"] is False
    assert out["empty"] is False


def test_an_empty_release_says_why_it_shows_nothing(
        filled: Any, data_dir: Path, passphrase_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A window nobody was active in printed a bare "(nothing to show)" right under
    "epsilon 2 spent": the reader could not tell a fault from the k_min_users rule."""
    from appliance.cli import main

    aggregates_only(tmp_path, monkeypatch)
    main(["stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
          str(passphrase_file), "--tenant", "acme", "--from", "2020-01-01", "--to",
          "2020-01-08", "--role", "figures"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(nothing to show: no topic reached 5 people (noisy count) in this window: " \
           "there may be none, or too few people to show)" in out, out


def test_a_share_or_mean_whose_interval_says_nothing_reads_noisy_not_a_number() -> None:
    from appliance.analytics import GroupStats
    from appliance.cli.stats import _line
    from appliance.privacy import CI95, Figure

    def noisy(value: float, half_width: float) -> Figure:
        return Figure(value, half_width / CI95, exact=False)

    small = GroupStats("tp_a", "password reset", threads=noisy(12, 37),
                       mean_turns=noisy(780.0, 2946), refinement_share=noisy(1.0, 52.4),
                       abandonment_share=noisy(0.4, 0.09), blocked_share=noisy(0.0, 0.6),
                       tokens=noisy(9000, 400), mean_tokens=noisy(750, 900))
    line = _line(small, "USD")
    # before: "turns 780.0±2946  refine 100%±5240", read at a glance as "all refined"
    assert "turns/thread noisy" in line and "refine noisy" in line and "blocked noisy" in line
    # readable ones stay; a count whose interval reaches zero reads as its top (12 + 37)
    assert "abandon 40%±9" in line and "threads <50" in line
    assert "tokens 9000±400" in line
    # a sum whose interval cannot tell it from zero (a demo tenant's 29 prompts read as
    # "tokens 6411091.6±11982929", "cost 0.0000±1497.8661 USD"), and counts are whole
    tiny = GroupStats("tp_b", None, threads=noisy(8, 37), mean_turns=noisy(2.0, 1.0),
                      refinement_share=noisy(0.1, 0.1), abandonment_share=noisy(0.1, 0.1),
                      blocked_share=noisy(0.0, 0.1), tokens=noisy(6411091.6, 11982929),
                      mean_tokens=noisy(10, 1), cost=noisy(0.0, 1497.87),
                      mean_cost=noisy(0.2, 5.0), costed=noisy(3, 10), users=noisy(25, 48))
    line = _line(tiny, "USD")
    assert "threads <46" in line and "people <74" in line  # 8 + 37, 25 + 48
    assert "tokens noisy" in line and "cost noisy" in line and "USD" not in line
    assert "6411091" not in line and "1497" not in line
    exact = GroupStats("tp_a", None, Figure(2), Figure(3), Figure(1.0), Figure(0.0),
                       Figure(0.0), Figure(10), Figure(5))
    assert "turns/thread 3.0" in _line(exact, "USD") and "refine 100%" in _line(exact, "USD")
    # no thread of known cost: unknown, not free (it printed "cost 0.0000 USD")
    assert "cost –" in _line(exact, "USD") and "0.0000" not in _line(exact, "USD")
    priced = GroupStats("tp_a", None, Figure(2), Figure(3), Figure(1.0), Figure(0.0),
                        Figure(0.0), Figure(10), Figure(5), cost=Figure(0.5),
                        mean_cost=Figure(0.25), costed=Figure(2))
    assert "cost 0.5000 USD (per thread 0.2500)" in _line(priced, "USD")


def test_a_positions_row_names_its_figures() -> None:
    """`stats positions` printed `2026-11-30  continuation   130±127  noisy`: neither what
    the 130 counts nor that `noisy` is the share of the day, where every other report
    names its figures (`threads 12±37  people 25±48`)."""
    from appliance.analytics import PositionShare
    from appliance.cli.stats import _line
    from appliance.privacy import CI95, Figure

    noisy = PositionShare("2026-11-30", "continuation", Figure(130, 127.3 / CI95, exact=False),
                          Figure(0.73, 0.71 / CI95, exact=False))
    # 130±127 is a count too noisy to read as one number: its interval, not "130"
    assert _line(noisy).split() == ["2026-11-30", "continuation", "prompts", "~3–257",
                                    "share", "noisy"]
    exact = PositionShare("2026-03-02", "new", Figure(4), Figure(0.25))
    assert "prompts 4  share 25%" in _line(exact)


def test_a_cross_user_positions_report_says_what_its_share_is_of(
        filled: Any, data_dir: Path, passphrase_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """On the bench week `2026-12-01  continuation  prompts 348±127  share 100%±37` was the
    day's only row: its new prompts were withheld, and 100% read as "no new threads"."""
    from appliance.cli import main

    main(["stats", "positions", "--data-dir", str(data_dir), "--passphrase-file",
          str(passphrase_file), "--tenant", "acme", *WINDOW])
    out = " ".join(capsys.readouterr().out.split())
    assert "share: of the prompts shown for that period; a position withheld that period " \
           "(its noisy count of people under 5) is in no share" in out, out


def test_a_release_made_before_a_merge_keeps_its_topics_labels(runtime: Any) -> None:
    """The morning's release names topic tp_old; a refinement at noon merges it into
    tp_live. The release's row still shows the label (it read `tp_old · unlabelled`
    for the rest of the day on the topics screen and in `stats topics`)."""
    from appliance.privacy import Figure, GroupFigures, Release
    from appliance.topics import tables

    db = runtime.store.db
    row = tables.TopicRow("tp_live", "", 9, 6, "password reset", (("password reset", 9),),
                          0.0)
    old = tables.TopicRow("tp_old", "", 4, 5, "reset link", (("reset link", 4),), 0.0)
    tables.publish(db, "acme", [row, old], {}, [])
    tables.publish(db, "acme", [row], {"tp_old": "tp_live"}, [])  # the noon refinement
    rel = Release(groups=(GroupFigures("tp_old", Figure(5.0, 1.0, exact=False)),),
                  exact=False, epsilon=1.0, k_min_users=5, released_at=0.0)
    rows = analytics.group_rows(rel, analytics.topic_labels(runtime.store, "acme"))
    assert [r.label for r in rows] == ["password reset"]
    assert analytics.topic_labels(runtime.store, "other") == {}


# ---------------------------------------------------------------- pure figures


def turn(minute: int, **kw: Any) -> Turn:
    base = {"position": "continuation", "intent": "information_seeking", "status": "ok",
            "model": "m1", "tokens": 10, "topic_id": "tp_a"}
    return Turn(ts=T0 + timedelta(minutes=minute), **{**base, **kw})


def exact_gate(db: Any) -> PrivacyGate:
    return PrivacyGate(db, PrivacySettings(), rng=np.random.default_rng(0))


def test_group_figures_follow_the_definitions(runtime: Any) -> None:
    end = T0 + timedelta(hours=5)
    threads = [
        ThreadRow("t1", "me", (turn(0, position="new"), turn(1, intent="error_recovery"),
                               turn(2, status="error"))),  # refined, ended after a failure
        ThreadRow("t2", "me", (turn(10, position="new", model="m2"), turn(11, status="blocked"),
                               turn(12))),
        ThreadRow("t3", "me", (turn(299, position="new", topic_id="tp_b", status="error"),)),
    ]
    rep = analytics.topic_stats(threads, exact_gate(runtime.store.db), tenant="acme",
                                start=T0, end=end, labels={"tp_a": "weather, rain"},
                                single_user="me")
    by = {r.key: r for r in rep.rows}
    a = by["tp_a"]
    assert a.label == "weather, rain" and a.threads.value == 2 and a.mean_turns.value == 3
    assert a.refinement_share.value == 0.5 and a.abandonment_share.value == 0.5
    assert a.blocked_share.value == 0.5 and a.tokens.value == 60 and a.mean_tokens.value == 30
    assert by["tp_b"].abandonment_share.value == 0  # still active: not abandoned yet
    models = analytics.model_stats(threads, exact_gate(runtime.store.db), tenant="acme",
                                   start=T0, end=end, labels={}, single_user="me")
    assert {r.key: r.threads.value for r in models.rows} == {"m1": 3, "m2": 1}


def test_cost_rows_read_by_length_then_refined_then_abandoned(runtime: Any) -> None:
    """`stats cost` sorted its rows by thread count across its three dimensions: on the
    bench week `not refined`, `length 4-7 turns`, `not abandoned`, `length 2-3 turns`,
    `length 8+ turns`, `length 1 turn`."""
    end = T0 + timedelta(hours=5)
    threads = [ThreadRow(f"t{n}", "me", tuple(turn(10 * n + i) for i in range(size)))
               for n, size in enumerate([1, 2, 2, 5, 5, 5, 9])]
    threads.append(ThreadRow("r", "me", (turn(200), turn(201, intent="error_recovery"))))
    rep = analytics.cost_outcomes(threads, exact_gate(runtime.store.db), tenant="acme",
                                  start=T0, end=end, single_user="me")
    assert [r.key for r in rep.rows] == [
        "length 1 turn", "length 2-3 turns", "length 4-7 turns", "length 8+ turns",
        "refined", "not refined", "abandoned", "not abandoned"]


def test_incident_finds_the_over_represented_topic(runtime: Any) -> None:
    base = [ThreadRow(f"b{i}", "me", (turn(i, topic_id="tp_a" if i % 2 else "tp_b"),))
            for i in range(20)]
    window = [ThreadRow(f"w{i}", "me", (turn(100 + i, topic_id="tp_b" if i < 2 else "tp_c"),))
              for i in range(10)]
    rep = analytics.incident_lifts(window, base, exact_gate(runtime.store.db), tenant="acme",
                                   start=T0, end=T0 + timedelta(hours=3), labels={},
                                   single_user="me")
    topics = [r for r in rep.rows if r.dimension == "topic"]
    assert topics[0].key == "tp_c" and topics[0].lift is None  # new in the window
    assert topics[0].significant and not any(r.significant for r in topics[1:])
    b = next(r for r in topics if r.key == "tp_b")
    assert b.window_share == 0.2 and b.baseline_share == 0.5 and b.lift == 0.4


def test_an_incident_topic_absent_from_the_baseline_carries_the_release_noise(
        runtime: Any) -> None:
    from appliance.cli.stats import _line

    users = [f"u{i}" for i in range(40)]
    base = [ThreadRow(f"b{i}", u, (turn(i, topic_id="tp_a"),)) for i, u in enumerate(users)]
    window = [ThreadRow(f"w{i}", u, (turn(100 + i, topic_id="tp_new"),))
              for i, u in enumerate(users)]
    gate = PrivacyGate(runtime.store.db, PrivacySettings(k_min_users=1, epsilon_per_day=60,
                                                         release_epsilon={"incident": 50}),
                       rng=np.random.default_rng(3))
    rep = analytics.incident_lifts(window, base, gate, tenant="acme", start=T0,
                                   end=T0 + timedelta(hours=3), labels={})
    new = next(r for r in rep.rows if r.key == "tp_new")
    # before: "baseline 0.0±0", an exact zero in a noisy release
    assert new.lift is None and new.baseline.value == 0 and not new.baseline.exact
    assert new.baseline.noise_scale == new.window.noise_scale > 0
    assert " new" in _line(new)
    quiet = replace(new, window=replace(new.window, value=0.0), significant=False)
    assert " new" not in _line(quiet) and "–" in _line(quiet)  # nothing in either window


def test_a_lift_between_two_counts_that_reach_zero_reads_noisy() -> None:
    """`stats incident` printed `position new  x0.00  window <64  baseline <113` on the
    bench week: neither count can be told from zero, and x0.00 read as "new
    conversations dropped to none"."""
    from appliance.analytics import Lift
    from appliance.cli.stats import _line
    from appliance.privacy import CI95, Figure

    def noisy(value: float) -> Figure:
        return Figure(value, 64 / CI95, exact=False)

    both = Lift("position", "new", None, noisy(0.0), noisy(49.0), 0.0, 0.2, 0.0, False)
    assert _line(both).split()[2:4] == ["noisy", "window"], _line(both)
    # one count clear of zero: the lift is kept
    clear = replace(both, baseline=noisy(171.0), lift=0.0)
    assert "x0.00" in _line(clear)
    exact = Lift("position", "new", None, Figure(0.0), Figure(4.0), 0.0, 0.5, 0.0, False)
    assert "x0.00" in _line(exact)


def test_an_incident_says_what_its_lift_is_and_when_it_reads_noisy(
        filled: Any, data_dir: Path, passphrase_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`continuation x1.39  window 147±64  baseline 171±64`: a lift above 1 on a smaller
    count read as a contradiction; the header did not say a lift compares shares."""
    from appliance.cli import main

    main(["stats", "incident", "--data-dir", str(data_dir), "--passphrase-file",
          str(passphrase_file), "--tenant", "acme", *WINDOW])
    out = " ".join(capsys.readouterr().out.split())
    assert "x: a row's share of its dimension (topics, positions or models) in the window " \
           "over its share in the baseline" in out, out
    assert "noisy: a lift between two counts that both reach 0, which says nothing" in out


def test_position_mix_shares_add_up_per_day(runtime: Any) -> None:
    day2 = 24 * 60
    threads = [ThreadRow("t", "me", (turn(0, position="new"), turn(1), turn(2),
                                     turn(day2, position="topic_shift")))]
    rep = analytics.position_mix(threads, exact_gate(runtime.store.db), tenant="acme",
                                 start=T0, end=T0 + timedelta(days=2), single_user="me")
    shares = {(r.period, r.position): r.share.value for r in rep.rows}
    day = T0.strftime("%Y-%m-%d")
    assert shares[(day, "continuation")] == pytest.approx(2 / 3)
    assert shares[((T0 + timedelta(days=1)).strftime("%Y-%m-%d"), "topic_shift")] == 1.0


# ---------------------------------------------------------------- search scoping


def search(cli_runner: Any, common: list[str], *args: str) -> Any:
    from appliance.cli import cli

    return cli_runner.invoke(cli, ["search", "rain tomorrow", *common, "--json", *args])


def test_search_is_scoped_by_user_time_and_policy(filled: Any, cli_runner: Any, data_dir: Path,
                                                  passphrase_file: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.config import policy_dir

    common = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    everyone = json.loads(search(cli_runner, common, "--tenant", "acme", "-k", "50").output)
    assert len({h["user"] for h in everyone}) == 6 and len(everyone) == 24
    mine = json.loads(search(cli_runner, common, "--tenant", "acme", "--user", "user1").output)
    assert len(mine) == 4 and len({h["user"] for h in mine}) == 1
    assert "weather" in mine[0]["text"] or "rain" in mine[0]["text"]
    late = json.loads(search(cli_runner, common, "--tenant", "acme", "-k", "50", "--since",
                             (T0 + timedelta(hours=3)).isoformat()).output)
    assert len(late) == 12 and len({h["user"] for h in late}) == 3  # users 3, 4 and 5
    assert min(h["ts"] for h in late) == "2026-03-02T12:00:00Z"
    # the same from an age, as the TUI's since: takes one: the minutes since 12:00, rounded
    # up, and one more, so that the command's own clock, a little later, cannot pass 12:00
    # (the prompts before 12:00 are at 11:00-11:21)
    ago = math.ceil((datetime.now(UTC) - (T0 + timedelta(hours=3))).total_seconds() / 60) + 1
    assert json.loads(search(cli_runner, common, "--tenant", "acme", "-k", "50", "--since",
                             f"{ago}m").output) == late
    assert search(cli_runner, common, "--role", "operator").exit_code != 0
    blank = search(cli_runner, common, "--tenant", "")
    assert "must not be blank" in str(blank.exception) and blank.exception.exit_code == 2
    from appliance.cli import cli

    after_all = (T0 + timedelta(days=30)).date().isoformat()  # past, after every prompt
    nothing = cli_runner.invoke(cli, ["search", "rain tomorrow", *common, "--tenant", "acme",
                                      "--since", after_all])
    assert nothing.exit_code == 0 and "no matching prompts" in nothing.output
    future = cli_runner.invoke(cli, ["search", "rain tomorrow", *common, "--tenant", "acme",
                                     "--since", "2099-01-01"])
    assert "is in the future" in str(future.exception) and future.exception.exit_code == 2

    policies = tmp_path / "policies"
    shutil.copytree(policy_dir(), policies)
    toml = policies / "privacy.toml"
    toml.write_text(toml.read_text().replace("[cross_user_search]\nacme = true",
                                             "[cross_user_search]\nacme = false"))
    monkeypatch.setenv("SEMTRACE_POLICY_DIR", str(policies))
    refused = search(cli_runner, common, "--tenant", "acme")
    assert refused.exit_code != 0 and "cross_user_search" in str(refused.exception)
    # without --tenant: refused alike, not an empty list as if nothing matched
    unscoped = search(cli_runner, common)
    assert "cross_user_search" in str(unscoped.exception) and unscoped.exception.exit_code == 4
    assert len(json.loads(search(cli_runner, common, "--tenant", "acme", "--user",
                                 "user1").output)) == 4


def test_stats_text_fits_a_terminal_and_keeps_every_figure(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`stats topics` printed one line of about 230 characters per topic (and a header of
    250-330): in a terminal of 100-120 columns every row wrapped mid-figure. Each line now
    fits 100 columns; a row continues on indented lines, its label whole, every figure kept."""
    from appliance.analytics import BlockStats, GroupStats, Lift, Report, TrendPoint
    from appliance.cli.stats import WIDTH, _print
    from appliance.privacy import CI95, Figure

    def noisy(value: float, half_width: float) -> Figure:
        return Figure(value, half_width / CI95, exact=False)

    label = "kubernetes network policy, namespace isolation rules"  # longer than the column
    days = tuple(TrendPoint(f"2026-03-{d:02d}", 10.0 + d, 3.0, True) for d in range(1, 15))
    wide = GroupStats("tp_0123456789ab", label, threads=noisy(1234, 37),
                      mean_turns=noisy(12.5, 3.0), refinement_share=noisy(0.45, 0.1),
                      abandonment_share=noisy(0.125, 0.05), blocked_share=noisy(0.05, 0.02),
                      tokens=noisy(123456789, 4000), mean_tokens=noisy(1000, 10),
                      cost=noisy(12345.6789, 12.5), mean_cost=noisy(10.0004, 0.0101),
                      costed=noisy(1200, 37), error_share=noisy(0.33, 0.1),
                      users=noisy(321, 48), merged=("tp_aaaaaaaaaaaa", "tp_bbbbbbbbbbbb"),
                      trend=days)
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 15, tzinfo=UTC)

    def report(kind: str, rows: tuple[Any, ...], **kw: Any) -> Report[Any]:
        return Report(kind=kind, tenant="acme", start=start, end=end, exact=False,
                      epsilon=2.0, budget_remaining=2.0, k_min_users=5, rows=rows,
                      released_at=datetime.now(UTC), **kw)

    model = replace(wide, key="anthropic/claude-3-5-sonnet-20241022", merged=(), trend=())
    blocks = BlockStats("tp_0123456789ab", label, noisy(40, 9), noisy(3.5, 1),
                        noisy(0.2, 0.1), noisy(0.3, 0.1), noisy(0.1, 0.05),
                        thread_ids=tuple(f"th_{i:016x}" for i in range(8)))
    lift = Lift("topic", "tp_0123456789ab", label, noisy(120, 37), noisy(12, 37), 0.2,
                0.02, 10.0, True)
    for rep in (report("topics", (wide,), uncounted=("tp_cccccccccccc",)),
                report("models", (model,), topic="tp_0123456789ab", topic_label=label),
                report("blocks", (blocks,)),
                report("incident", (lift,), baseline_start=start - timedelta(days=14),
                       baseline_end=start)):
        _print(rep, "USD")
        out = capsys.readouterr().out
        assert max(len(line) for line in out.splitlines()) <= WIDTH, out
        flat = " ".join(out.split())
        if rep.kind in ("topics", "models"):
            row = rep.rows[0]
            for shown in (row.key, label, "threads ≥1234±37", "people ≥321±48",
                          "turns/thread 12.5±3", "refine 45%±10", "abandon 12%±5", "errors 33%±10",
                          "blocked 5%±2", "tokens 123456789±4000",
                          "cost 12345.6789±12.5000 USD (per thread 10.0004±0.0101)"):
                assert shown in flat or rep.kind == "models" and "≥" in shown, (shown, out)
        if rep.kind == "topics":
            assert "14 days │" in out and "with tp_aaaaaaaaaaaa, tp_bbbbbbbbbbbb merged since" \
                in flat and "not counted: tp_cccccccccccc" in flat
            assert "differentially private: new release, epsilon 2 spent" in flat
            assert "2 left today" in flat and "± is a 95% interval" in flat
        if rep.kind == "models":
            assert f"on topic tp_0123456789ab ({label})" in flat
            assert "threads 1234±37  people 321±48" in out
        if rep.kind == "blocks":
            assert all(t in out for t in blocks.thread_ids) and "repeated 10%±5" in out
        if rep.kind == "incident":
            assert "x10.00*" in out and "window 120±37" in out and "baseline <50" in out
            assert "* marks a rise beyond the noise" in out


def test_an_incidents_rows_line_up_whatever_the_length_of_their_labels(capsys: Any) -> None:
    """`stats incident` padded labels to 30 characters, so a topic labelled 'environmental
    impact, bullet point' pushed its row's lift and window figures four columns right of
    the rows above and below it."""
    from appliance.analytics import Lift, Report
    from appliance.cli.stats import _print
    from appliance.privacy import CI95, Figure

    def noisy(value: float) -> Figure:  # counts clear of zero: their lift reads "new"
        return Figure(value, 16 / CI95, exact=False)

    rows = tuple(Lift("topic", f"tp_{i:012x}", label, noisy(n), noisy(0), 0.1, 0.0, None,
                      False)
                 for i, (label, n) in enumerate((("hotel, town", 45),
                                                 ("environmental impact, bullet point", 44),
                                                 ("seat assignment", 25))))
    start = datetime(2026, 11, 30, tzinfo=UTC)
    _print(Report(kind="incident", tenant="acme", start=start, end=start + timedelta(days=7),
                  exact=False, epsilon=1.0, budget_remaining=0.0, k_min_users=5, rows=rows,
                  released_at=datetime.now(UTC), baseline_start=start - timedelta(days=7),
                  baseline_end=start), "USD")
    shown = [line for line in capsys.readouterr().out.splitlines() if " tp_" in line]
    assert len(shown) == 3, shown
    assert len({line.index(" new ") for line in shown}) == 1, shown
    assert len({line.index("window") for line in shown}) == 1, shown


def test_an_incident_says_what_new_and_a_dash_mean(capsys: Any) -> None:
    """`position continuation  –  window <87  baseline <64` (a real store's globex, 2 days
    against the 2 before): the header explained x, * and noisy, not `–` or `new`."""
    from appliance.analytics import Lift, Report
    from appliance.cli.stats import _print
    from appliance.privacy import CI95, Figure

    def noisy(value: float) -> Figure:
        return Figure(value, 16 / CI95, exact=False)

    rows = (Lift("position", "continuation", None, noisy(3.0), noisy(-2.0), 0.5, 0.0, None,
                 False),
            Lift("topic", "tp_000000000001", "hotel, town", noisy(45.0), noisy(0.0), 0.5,
                 0.0, None, False))
    start = datetime(2026, 11, 30, tzinfo=UTC)
    _print(Report(kind="incident", tenant="acme", start=start, end=start + timedelta(days=7),
                  exact=False, epsilon=1.0, budget_remaining=0.0, k_min_users=5, rows=rows,
                  released_at=datetime.now(UTC), baseline_start=start - timedelta(days=7),
                  baseline_end=start), "USD")
    out = capsys.readouterr().out
    assert " – " in out and " new " in out, out
    said = " ".join(out.split())
    assert ("new: none in the baseline (its noisy count at or under 0), some in the window; "
            "–: none in the baseline, and the window's count cannot be told from 0 "
            "either") in said, out
