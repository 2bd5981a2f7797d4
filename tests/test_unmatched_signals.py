"""A request whose history or previous_response_id names no turn Semtrace holds is linked
by its content; `threads show` and the TUI's Why panel say what it carried that matched
nothing, so an engineer sees that the gateway's digests or ids are not the ones held.
Real pipeline: Presidio, llama.cpp, SQLCipher."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from conftest import make_prompt

from appliance.ingest import content_digest
from appliance.records import Message


def test_a_history_or_response_id_that_matched_nothing_is_named_in_show_and_the_why_panel(
        pipeline: Any, runtime: Any, data_dir: Path, passphrase_file: Path) -> None:
    from click.testing import CliRunner
    from test_tui import why_panels

    from appliance.cli import cli

    first = make_prompt("Which vaccines do I need for a trip to Kenya?", user="ria",
                        minutes=0, request_id="v-1")
    # the gateway digests its messages some other way: nothing it sends is held
    wrong = tuple(Message(role=r, digest=content_digest(t + " (as the gateway saw it)"))
                  for r, t in (("user", first.text), ("assistant", "Yellow fever.")))
    second = replace(make_prompt("Are those vaccines needed for children travelling to "
                                 "Kenya too?", user="ria", minutes=2, request_id="v-2"),
                     history=wrong)
    third = replace(make_prompt("And are the Kenya vaccines covered by insurance?",
                                user="ria", minutes=3, request_id="v-3"),
                    previous_response_id="resp_never_reported")
    out = pipeline.process([first, second, third])
    assert out[1].parent_id == out[0].record_id and out[1].link_source == "content"
    assert out[2].parent_id is not None and out[2].link_source == "content"

    args = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    shown = CliRunner().invoke(cli, ["threads", "show", out[0].thread_id, *args])
    assert shown.exit_code == 0, shown.output
    lines = [ln for ln in shown.output.splitlines() if ln.startswith("  20")]
    assert len(lines) == 3
    assert "unmatched" not in lines[0]
    assert "signal=content" in lines[1] and "unmatched=history" in lines[1], lines[1]
    assert "unmatched=previous_response_id" in lines[2], lines[2]
    as_json = CliRunner().invoke(cli, ["threads", "show", out[0].thread_id, *args, "--json"])
    ev = {r["request_id"]: r["evidence"] for r in json.loads(as_json.output)["records"]}
    assert ev["v-2"]["history"] == {"messages": 2, "matched": None}
    assert ev["v-3"]["previous_response_id"] == {"held": False}

    panels = why_panels(runtime, out[0].thread_id, 3)
    assert "named no turn held" not in panels[0]
    assert "decided by content" in panels[1]
    assert "message history (2 user/assistant messages) named no turn held" in panels[1]
    assert "previous_response_id named no turn held" in panels[2]


def test_unmatched_signals_are_counted_on_metrics_for_an_operator_to_alert_on(
        pipeline: Any, runtime: Any) -> None:
    """Through the real service's socket and its /metrics: each prompt whose history or
    previous_response_id named no turn held counts once under that signal; a matched
    history, a retry and a first turn count nothing."""
    import asyncio
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from appliance.client import AsyncClient
    from appliance.config import TelemetrySettings
    from appliance.service import Service
    from appliance.telemetry import start_telemetry

    def ingest(rid: str, text: str, minute: int, **kw: Any) -> dict[str, Any]:
        return {"v": 1, "op": "ingest", "request_id": rid, "tenant": "acme",
                "user_id": "ria", "ts": f"2026-03-02T09:{minute:02d}:00Z", "text": text, **kw}

    first = "Which vaccines do I need for a trip to Kenya?"
    elsewhere = [{"role": "user", "content": first + " (as the gateway saw it)"},
                 {"role": "assistant", "content": "Yellow fever."}]
    requests = [
        ingest("m-1", first, 0),
        ingest("m-2", "Are those vaccines needed for children travelling to Kenya too?", 2,
               history=elsewhere),
        ingest("m-2", "Are those vaccines needed for children travelling to Kenya too?", 2,
               history=elsewhere),  # a retry: counted once
        ingest("m-3", "And are the Kenya vaccines covered by insurance?", 3,
               previous_response_id="resp_never_reported"),
        ingest("m-4", "Do I need malaria tablets as well?", 4,
               history=[{"role": "user", "content": first}]),  # held: matched
    ]

    async def drive(service: Service) -> list[dict[str, Any]]:
        await service.start()
        client = await AsyncClient.connect(service.socket_path)
        replies = [await client.request(r) for r in requests]
        await client.close()
        await service.drain()
        return replies

    settings = TelemetrySettings.model_validate({"metrics": {"listen": "127.0.0.1:0"}})
    service = Service(pipeline, runtime.policies, socket_path=runtime.data_dir / "u.sock")
    telemetry, server = start_telemetry(settings, pipeline, queue_depth=service.queue_depth,
                                        health=service.health)
    service.observer = telemetry
    try:
        replies = asyncio.run(drive(service))
        with urllib.request.urlopen(f"http://{server.address}/metrics", timeout=30) as resp:
            exposition = resp.read().decode()
    finally:
        server.close()
        telemetry.shutdown()
    assert [r["ok"] for r in replies] == [True] * 5, replies
    assert [r["link_source"] for r in replies] == ["content", "content", "content",
                                                    "content", "history"], replies
    assert replies[2]["duplicate"]
    counted = {s.labels["signal"]: s.value
               for f in text_string_to_metric_families(exposition)
               if f.name == "semtrace_gateway_signals_unmatched" for s in f.samples}
    assert counted == {"history": 1, "previous_response_id": 1}, counted
