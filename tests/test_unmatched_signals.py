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
