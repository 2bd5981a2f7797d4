"""`operator = "mask"` in redaction.toml: every value is stored and printed as `<TYPE>`,
unnumbered (docs/redaction.md, the policy file's own comment). The key was read and
validated, then ignored: placeholders were numbered (`<PERSON_1>`) under either value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import make_prompt

TEXT = "Lena Ortiz and Paul Weber met in Lyon."


@pytest.fixture
def masked(policies: Any) -> Any:
    """The shipped policies with `operator = "mask"`."""
    return policies.model_copy(update={
        "redaction": policies.redaction.model_copy(update={"operator": "mask"})})


def test_a_masked_policy_stores_unnumbered_placeholders(runtime, embedder, redactor,  # type: ignore[no-untyped-def]
                                                        masked):
    from appliance.index import VectorIndex
    from appliance.link import make_linker
    from appliance.pipeline import Pipeline

    pipeline = Pipeline(store=runtime.store, index=VectorIndex(embedder.dims),
                        keyring=runtime.keyring, redactor=redactor, embedder=embedder,
                        linker=make_linker(masked.correlation), policies=masked)
    first = pipeline.process([make_prompt(TEXT)])[0]
    later = pipeline.process([make_prompt("Did Paul Weber write back?", minutes=1)])[0]
    texts = {r.record_id: r.text for r in runtime.store.records("1 = 1", ())}
    assert texts[first.record_id] == "<PERSON> and <PERSON> met in <LOCATION>."
    assert texts[later.record_id] == "Did <PERSON> write back?"


def test_a_masked_policy_makes_semtrace_redact_print_unnumbered_placeholders(  # type: ignore[no-untyped-def]
        redactor, masked, cli_runner, monkeypatch, tmp_path):
    import appliance.cli.redact as cli_redact
    from appliance.cli import cli
    from appliance.redact import Redactor

    # the session's loaded analyser under the masked settings (no second model load)
    masking = Redactor.__new__(Redactor)
    masking.__dict__.update(redactor.__dict__, settings=masked.redaction)
    monkeypatch.setattr(cli_redact, "_load_redactor", lambda cache_dir: masking)
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps({"index": 0, "text": TEXT}) + "\n")
    result = cli_runner.invoke(cli, ["redact", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["redacted"] == "<PERSON> and <PERSON> met in <LOCATION>."
