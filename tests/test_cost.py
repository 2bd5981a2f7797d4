"""Cost per thread, model and outcome: reported by the gateway, or priced by pricing.toml."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import make_prompt, write_stream
from test_spine import run_cli

from appliance.config import policy_dir

# (user, minute, model, text, input tokens, output tokens, reported cost)
TURNS = [
    ("alice", 0, "openai/gpt-4o", "What's the weather in Paris this weekend?", 30, 200, 0.0021),
    ("alice", 1, "openai/gpt-4o", "How about tomorrow?", 260, 150, 0.0035),
    ("alice", 2, "openai/gpt-4o", "Should I bring an umbrella?", 450, 90, 0.0041),
    ("bob", 3, "anthropic/claude-3-5", "How do I reset my password?", 25, 400, 0.0125),
    ("bob", 4, "anthropic/claude-3-5", "The reset link in the email does not work", 480, 300,
     0.0150),
    ("carol", 90, "local/llama-3-70b", "Give me a recipe for a vegetarian lasagna", 20, 600,
     None),
]
# per million tokens; local/llama-3-70b is not listed: its calls have no cost
PRICES = """currency = "EUR"
thread_cost_bound = 0.5

[[models]]
provider = "openai"
model = "gpt-4o"
input_per_million = 2.0
output_per_million = 8.0

[[models]]
model = "claude-3-5"
input_per_million = 3.0
output_per_million = 15.0
"""
PRICE = {"openai/gpt-4o": (2.0, 8.0), "anthropic/claude-3-5": (3.0, 15.0)}


def _stream(reported: bool) -> list[dict[str, Any]]:
    rows = []
    for user, minute, model, text, tin, tout, cost in TURNS:
        response: dict[str, Any] = {"input_tokens": tin, "output_tokens": tout, "status": "ok"}
        if reported and cost is not None:
            response["cost"] = cost
        rows.append({"tenant": "acme", "user_id": user, "text": text, "model": model,
                     "ts": f"2026-03-02T{9 + minute // 60:02d}:{minute % 60:02d}:00Z",
                     "response": response})
    return rows


def _policies(tmp: Path, pricing: str | None) -> Path:
    out = tmp / "policies"
    shutil.copytree(policy_dir(), out)
    (out / "pricing.toml").unlink()
    if pricing is not None:
        (out / "pricing.toml").write_text(pricing)
    return out


def _replay(tmp: Path, passphrase: Path, rows: list[dict[str, Any]], policies: Path
            ) -> tuple[list[str], dict[str, str]]:
    """Replay into a data dir; (the common CLI args, thread id per input index)."""
    env = {"SEMTRACE_POLICY_DIR": str(policies)}
    args = ["--data-dir", str(tmp / "data"), "--passphrase-file", str(passphrase)]
    out = tmp / "out.jsonl"
    done = run_cli("replay", str(write_stream(tmp / "in.jsonl", rows)), "--out", str(out),
                   *args, env=env)
    assert done.returncode == 0, done.stderr
    threads = {str(r["index"]): r["thread_id"] for r in map(json.loads, out.read_text().split(
        "\n")[:-1])}
    return args, threads


def _expected(threads: dict[str, str], cost_of: Any) -> dict[str, float | None]:
    by_thread: dict[str, float | None] = {}
    for i, turn in enumerate(TURNS):
        tid, cost = threads[str(i)], cost_of(turn)
        if cost is not None:
            by_thread[tid] = (by_thread.get(tid) or 0.0) + cost
        else:
            by_thread.setdefault(tid, None)
    return by_thread


def _listed(args: list[str], policies: Path) -> dict[str, float | None]:
    done = run_cli("threads", "list", "--json", *args,
                   env={"SEMTRACE_POLICY_DIR": str(policies)})
    assert done.returncode == 0, done.stderr
    return {t["thread_id"]: t["cost"] for t in json.loads(done.stdout)}


def _model_costs(args: list[str], policies: Path, user: str) -> dict[str, Any]:
    # one user's exact view (needs user_stats: the compliance role)
    done = run_cli("stats", "models", "--tenant", "acme", "--user", user, "--from", "2026-03-01",
                   "--to", "2026-03-03", "--json", "--role", "compliance", *args,
                   env={"SEMTRACE_POLICY_DIR": str(policies)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    return {"currency": report["currency"],
            **{r["key"]: (r["cost"]["value"], r["costed"]["value"]) for r in report["rows"]}}


def test_reported_costs_add_up_per_thread_and_model(tmp_path: Path,
                                                    passphrase_file: Path) -> None:
    policies = _policies(tmp_path, PRICES)  # a price table too: reported costs win over it
    args, threads = _replay(tmp_path, passphrase_file, _stream(reported=True), policies)
    listed = _listed(args, policies)
    expected = _expected(threads, lambda t: t[6] if t[6] is not None else None)
    assert listed.keys() == expected.keys()
    for tid, cost in expected.items():
        assert listed[tid] == (None if cost is None else pytest.approx(cost))
    # carol's model is neither reported nor priced: her thread has no cost, not zero
    assert listed[threads["5"]] is None
    bob = _model_costs(args, policies, "bob")
    assert bob["currency"] == "EUR"
    assert bob["anthropic/claude-3-5"] == (pytest.approx(0.0125 + 0.0150), 1.0)


def test_priced_costs_are_tokens_times_the_price_table(tmp_path: Path,
                                                       passphrase_file: Path) -> None:
    policies = _policies(tmp_path, PRICES)
    args, threads = _replay(tmp_path, passphrase_file, _stream(reported=False), policies)

    def priced(turn: tuple[Any, ...]) -> float | None:
        if turn[2] not in PRICE:
            return None
        pin, pout = PRICE[turn[2]]
        return (turn[4] * pin + turn[5] * pout) / 1e6

    listed = _listed(args, policies)
    expected = _expected(threads, priced)
    for tid, cost in expected.items():
        assert listed[tid] == (None if cost is None else pytest.approx(cost))
    totals: dict[str, float] = defaultdict(float)
    for turn in TURNS[:3]:
        totals[turn[2]] += priced(turn) or 0.0
    alice = _model_costs(args, policies, "alice")
    assert alice["openai/gpt-4o"][0] == pytest.approx(totals["openai/gpt-4o"])
    carol = _model_costs(args, policies, "carol")
    assert carol["local/llama-3-70b"] == (0.0, 0.0)  # unpriced: no cost, and not counted
    text = run_cli("threads", "list", *args, env={"SEMTRACE_POLICY_DIR": str(policies)}).stdout
    assert "cost EUR" in text and f"{listed[threads['3']]:.2f}" in text


def test_a_bad_price_table_is_refused_naming_the_file_and_key(tmp_path: Path,
                                                              passphrase_file: Path) -> None:
    bad = _policies(tmp_path, PRICES.replace("output_per_million = 8.0",
                                             "output_per_million = -8.0"))
    done = run_cli("replay", str(write_stream(tmp_path / "in.jsonl", _stream(False)[:1])),
                   "--out", str(tmp_path / "o.jsonl"), env={"SEMTRACE_POLICY_DIR": str(bad)})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "pricing.toml" in done.stderr and "models.0.output_per_million" in done.stderr
    twice = _policies(tmp_path / "twice", PRICES + PRICES[PRICES.index("[[models]]"):])
    done = run_cli("replay", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o.jsonl"),
                   env={"SEMTRACE_POLICY_DIR": str(twice)})
    assert done.returncode != 0 and "lists openai/gpt-4o twice" in done.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_a_reported_cost_in_a_later_update_replaces_the_priced_one(pipeline: Any) -> None:
    from appliance.query import get_thread
    from appliance.records import Response

    prompt = replace(make_prompt("Summarise our travel policy", user="dave"),
                     model="openai/gpt-4o", response=Response(input_tokens=1000,
                                                              output_tokens=100))
    first = pipeline.process([prompt])[0]
    priced = get_thread(pipeline.store, first.thread_id)
    assert priced is not None and priced.records[0].cost_source == "priced"
    assert priced.cost == pytest.approx((1000 * 2.50 + 100 * 10.00) / 1e6)  # shipped prices
    assert pipeline.update("acme", prompt.request_id, Response(cost=0.5), None)
    assert pipeline.update("acme", prompt.request_id, Response(output_tokens=900), None)
    reported = get_thread(pipeline.store, first.thread_id)
    assert reported is not None and reported.cost == pytest.approx(0.5)
    assert reported.records[0].cost_source == "reported"


def test_a_bad_reported_cost_is_refused_in_one_sentence() -> None:
    from appliance.protocol import ProtocolError, parse_request

    for cost, says in ((-0.5, "'response.cost' must not be negative."),
                       (float("inf"), "'response.cost' must be a finite number."),
                       ("0.2", "'response.cost' must be a number.")):
        request = {"v": 1, "op": "update", "tenant": "acme", "request_id": "r1",
                   "response": {"cost": cost}}
        with pytest.raises(ProtocolError) as err:
            parse_request(request, max_text_chars=1000)
        assert err.value.code == "bad_request" and err.value.message == says


def test_models_are_priced_by_provider_then_bare_name_never_by_guess() -> None:
    from appliance.config import PricingSettings
    from appliance.pricing import call_cost, find_price

    table = PricingSettings.model_validate({"models": [
        {"provider": "openai", "model": "gpt-4o", "input_per_million": 2.5,
         "output_per_million": 10.0},
        {"provider": "azure", "model": "gpt-4o", "input_per_million": 2.75,
         "output_per_million": 11.0},
        {"model": "claude-3-5", "input_per_million": 3.0, "output_per_million": 15.0}]})
    entry = find_price(table, "azure/gpt-4o")
    assert entry is not None and entry.input_per_million == 2.75
    assert find_price(table, "gpt-4o") is None  # two providers sell it: no guess
    assert find_price(table, "bedrock/claude-3-5") is not None  # listed without provider
    assert find_price(table, "openai/gpt-5") is None
    priced = call_cost(table, "openai/gpt-4o", 1000, None, None)
    assert priced is not None and priced.amount == pytest.approx(0.0025)
    assert call_cost(table, "openai/gpt-4o", None, None, None) is None  # no tokens, no cost
    reported = call_cost(table, "openai/gpt-5", 10, 10, 0.0)
    assert reported is not None and (reported.amount, reported.source) == (0.0, "reported")


def test_a_threads_summed_cost_reads_as_the_sum_not_float_noise(pipeline: Any) -> None:
    """Three turns the gateway reported at 0.1 each: `threads list|show --json` said the
    thread cost 0.30000000000000004 (binary float sums), which a spreadsheet kept."""
    from test_thread_reading import _history

    from appliance.query import get_thread, list_threads
    from appliance.records import Response, jsonable

    texts = ("Draft a reply to the supplier about the late delivery",
             "Make it shorter", "Now make it more formal")
    prompts = [replace(make_prompt(t, user="erin", minutes=k),
                       response=Response(cost=0.1, input_tokens=10, output_tokens=20),
                       history=_history(*(x for q in texts[:k] for x in (q, "ok"))))
               for k, t in enumerate(texts)]
    out = pipeline.process(prompts)
    assert len({o.thread_id for o in out}) == 1
    shown = get_thread(pipeline.store, out[0].thread_id)
    listed = list_threads(pipeline.store)
    assert shown is not None and len(listed) == 1
    assert json.dumps(jsonable(shown)["cost"]) == "0.3"
    assert json.dumps(jsonable(listed[0])["cost"]) == "0.3"
    assert [r.cost for r in shown.records] == [0.1, 0.1, 0.1]
