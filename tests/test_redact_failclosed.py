"""Redaction fails closed: a prompt the analyser cannot finish (a pattern past the policy's
`pattern_timeout_s`, Presidio's own timeout skip, a recogniser's error) is refused with one
error reply, counted and logged without its text, and nothing of it reaches the store.
Before, Presidio skipped the timed-out pattern with a warning and the prompt was stored
with what that pattern would have found left in clear. Real Presidio, spaCy, llama.cpp,
SQLCipher and the service's socket."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import make_prompt, real_pipeline, running_service, scan_for

from appliance.client import Client

CANARY = "quimby.failclosed@example.com"
CARD = "4111 1111 1111 1111"
# Nested alternation before a lookahead that never holds: the `regex` module cannot cut
# its backtracking short, so a run of x's takes exponential time.
CATASTROPHIC = r"(?:x|xx)+(?=y)\w"
PATHOLOGICAL = f"Mail {CANARY} my card {CARD} and this: " + "x" * 60 + "z"


@pytest.fixture(scope="module")
def strict_redactor(policies: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real redactor with one custom recogniser whose pattern backtracks
    catastrophically, under a 0.5 s limit."""
    from appliance.config import RedactionSettings
    from appliance.redact import Redactor

    base = policies.redaction.model_dump()
    settings = RedactionSettings.model_validate({
        **base, "entities": [*base["entities"], "TICKET"], "pattern_timeout_s": 0.5,
        "custom": [*base["custom"], {"entity": "TICKET", "patterns": [
            {"name": "ticket_ref", "regex": CATASTROPHIC, "score": 0.9}]}]})
    return Redactor(settings, cache_dir=tmp_path_factory.mktemp("tld"))


@pytest.fixture
def strict_pipeline(runtime: Any, embedder: Any, strict_redactor: Any) -> Any:
    return real_pipeline(runtime, embedder, strict_redactor)


def test_a_pattern_past_its_time_limit_refuses_that_prompt_only(strict_redactor: Any) -> None:
    from appliance.records import Redacted, Unredactable
    from appliance.redact.failclosed import RedactionFailed

    ok, bad = strict_redactor.redact_many([make_prompt(f"Mail {CANARY} today, xxy ok"),
                                           make_prompt(PATHOLOGICAL)])
    assert isinstance(ok, Redacted) and CANARY not in ok.text and "<EMAIL_ADDRESS>" in ok.text
    assert isinstance(bad, Unredactable)
    assert "ticket_ref" in bad.reason and "0.5 s" in bad.reason
    assert CANARY not in bad.reason and "xxxx" not in bad.reason and CANARY not in repr(bad)
    with pytest.raises(RedactionFailed) as raised:
        strict_redactor.redact(make_prompt(PATHOLOGICAL))
    assert CANARY not in str(raised.value)


def _iban_recogniser(redactor: Any) -> Any:
    return next(r for r in redactor._analyzer.registry.recognizers
                if r.name == "IbanRecognizer")


def _skip_as_presidio_does() -> list[Any]:
    """What Presidio's IBAN recogniser does on a regex timeout: log it, find nothing."""
    try:
        raise TimeoutError("regex timed out")
    except TimeoutError:
        logging.getLogger("presidio-analyzer").warning(
            "Regex pattern '%s' timed out after %s seconds, skipping.", "IBAN", 0.05,
            exc_info=True)
    return []


def test_presidio_timeout_skip_and_recogniser_errors_refuse_too(
        strict_redactor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Presidio's own "timed out, skipping" path (the IBAN recogniser's, which does not go
    through a pattern's `finditer`) and any other recogniser error refuse the prompt."""
    from appliance.records import Unredactable

    iban = _iban_recogniser(strict_redactor)
    monkeypatch.setattr(iban, "analyze", lambda *args, **kwargs: _skip_as_presidio_does())
    [red] = strict_redactor.redact_many([make_prompt(f"Mail {CANARY} please")])
    assert isinstance(red, Unredactable) and "time limit" in red.reason

    def broken(text: str, *args: Any, **kwargs: Any) -> list[Any]:
        raise ValueError(f"cannot parse {text}")

    monkeypatch.setattr(iban, "analyze", broken)
    [red] = strict_redactor.redact_many([make_prompt(f"Mail {CANARY} please")])
    assert isinstance(red, Unredactable) and "ValueError" in red.reason
    assert CANARY not in red.reason
    monkeypatch.undo()  # the module's redactor works as before afterwards
    [red] = strict_redactor.redact_many([make_prompt(f"Mail {CANARY} please")])
    assert not isinstance(red, Unredactable) and "<EMAIL_ADDRESS>" in red.text


def test_socket_ingest_is_refused_and_nothing_reaches_the_store(
        strict_pipeline: Any, data_dir: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sock = tmp_path / "s.sock"
    with running_service(strict_pipeline, sock), Client(sock, timeout=600) as c:
        good = c.ingest(tenant="acme", user_id="alice", request_id="good-1",
                        text="Which clauses in the lease cover the deposit?")
        assert good["ok"]
        reply = c.ingest(tenant="acme", user_id="alice", text=PATHOLOGICAL,
                         request_id="bad-1")
        again = c.ingest(tenant="acme", user_id="alice", text=PATHOLOGICAL,
                         request_id="bad-1")
        stats = c.request({"v": 1, "op": "stats"})
        lookup = c.request({"v": 1, "op": "lookup", "tenant": "acme", "request_id": "bad-1"})
    assert reply["ok"] is False and reply["error"]["code"] == "unredactable"
    assert reply["request_id"] == "bad-1" and "not stored" in reply["error"]["message"]
    assert CANARY not in str(reply) and CARD not in str(reply)
    assert again["error"]["code"] == "unredactable"  # a retry is refused the same way
    assert lookup["error"]["code"] == "not_found"
    assert stats["counters"]["unredactable"] == 2 and stats["counters"]["ingested"] == 1
    texts = [r.text or "" for r in strict_pipeline.store.records("1 = 1", ())]
    assert len(texts) == 1 and "lease" in texts[0]
    events = [r for r in caplog.records
              if getattr(r, "event", None) == "ingest_unredactable"]
    assert len(events) == 2 and all(r.request_id == "bad-1" for r in events)  # type: ignore[attr-defined]
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert CANARY not in logged and CARD not in logged and "xxxxxxxx" not in logged
    assert scan_for(data_dir, [CANARY, CARD, "x" * 40]) == []


def test_a_presidio_skip_with_the_budget_unspent_runs_the_prompt_again(
        strict_redactor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`regex` counts Presidio's IBAN timeout on the process's CPU clock: when other threads
    of the process made it skip once with this prompt's budget unspent, the analysis runs
    again and the IBAN is redacted; before, the prompt was refused."""
    from appliance.records import Redacted

    iban = _iban_recogniser(strict_redactor)
    real = iban.analyze
    skips: list[int] = []

    def skips_once(*args: Any, **kwargs: Any) -> Any:
        if not skips:
            skips.append(1)
            return _skip_as_presidio_does()
        return real(*args, **kwargs)

    monkeypatch.setattr(iban, "analyze", skips_once)
    [red] = strict_redactor.redact_many([make_prompt(
        f"Mail {CANARY}, IBAN GB82 WEST 1234 5698 7654 32")])
    assert skips == [1]
    assert isinstance(red, Redacted), red
    assert "<IBAN_CODE>" in red.text and "<EMAIL_ADDRESS>" in red.text
    assert "GB82" not in red.text and CANARY not in red.text
