"""Hostile frames at the protocol boundary: each gets its own clear error code, nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from appliance.errors import InputError
from appliance.ingest import content_digest, parse_line
from appliance.protocol import ProtocolError, decode_frame, parse_request

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _ingest(**kw: object) -> dict[str, object]:
    return {"v": 1, "op": "ingest", "request_id": "r1", "tenant": "acme", "user_id": "alice",
            "text": "How do I reset my password?", "ts": NOW.isoformat(), **kw}


def _code(frame: bytes) -> str:
    with pytest.raises(ProtocolError) as err:
        parse_request(decode_frame(frame), max_text_chars=1000, now=NOW)
    return err.value.code


@pytest.mark.parametrize("frame", [
    b'{"v":1,"op":"ping","request_id":NaN}',
    b'{"v":1,"op":"ping","request_id":"p","x":Infinity}',
    b'{"v":1,"op":"ping","request_id":"p","x":-Infinity}',
    b'{"v":1,"op":"ping","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"v":1,"op":"ping","x":' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}",
    b'{"v":1,"op":"ping","request_id":"\\ud800"}',
])
def test_nan_infinity_deep_nesting_and_lone_surrogates_are_bad_json(frame: bytes) -> None:
    assert _code(frame) == "bad_json"


def test_moderate_nesting_is_still_fine() -> None:
    obj = decode_frame(json.dumps({"v": 1, "op": "ping", "x": [[[[1]]]]}).encode())
    assert parse_request(obj, max_text_chars=10).op == "ping"


@pytest.mark.parametrize("response", [
    {"input_tokens": 1e300}, {"output_tokens": 10**30}, {"latency_ms": 1e308},
    {"cost": 10**400}, {"input_tokens": -(10**400)},  # past a float: was OverflowError
])
def test_absurd_numbers_are_bad_requests_not_batch_failures(response: dict[str, object]) -> None:
    assert _code(json.dumps(_ingest(response=response)).encode()) == "bad_request"
    update = {"v": 1, "op": "update", "request_id": "r1", "tenant": "acme", "response": response}
    assert _code(json.dumps(update).encode()) == "bad_request"


def test_huge_index_is_a_bad_request() -> None:
    assert _code(json.dumps(_ingest(index=10**30)).encode()) == "bad_request"


@pytest.mark.parametrize("ts", [
    (NOW + timedelta(days=3650)).isoformat(), "9999-12-31T23:59:59Z", 253402300799,
    (NOW - timedelta(days=4000)).isoformat(), "0001-01-01T00:00:00Z",
])
def test_timestamps_outside_the_window_around_arrival_are_bad_requests(ts: object) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_request(_ingest(ts=ts), max_text_chars=1000, now=NOW)
    assert err.value.code == "bad_request" and "'ts'" in err.value.message


def test_timestamps_near_arrival_are_taken() -> None:
    for ts in (NOW - timedelta(days=29), NOW + timedelta(minutes=4), NOW):
        req = parse_request(_ingest(ts=ts.isoformat()), max_text_chars=1000, now=NOW)
        assert req.prompt is not None and req.prompt.ts == ts
    narrow = dict(ts_past=timedelta(hours=1), ts_future=timedelta(0))
    with pytest.raises(ProtocolError):
        parse_request(_ingest(ts=(NOW - timedelta(hours=2)).isoformat()), max_text_chars=1000,
                      now=NOW, **narrow)  # type: ignore[arg-type]


def test_replay_lines_refuse_nan_and_lone_surrogates_in_one_sentence() -> None:
    for line in ('{"tenant":"t","user_id":"u","text":"x","ts":NaN,"request_id":"r"}',
                 '{"tenant":"t","user_id":"\\udc00","text":"x","ts":1,"request_id":"r"}',
                 '{"tenant":"t","user_id":"u","text":"x","ts":1,"request_id":"r",'
                 '"response":{"input_tokens":1e300}}'):
        with pytest.raises(InputError) as err:
            parse_line(line, max_text_chars=100)
        assert str(err.value).endswith(".")


def test_a_replay_line_takes_a_top_level_null_as_absent_as_the_sockets_do() -> None:
    """`"synthetic": null` and `"truncated": null` skipped the line (the sockets take them
    as absent since 0524cc0); a required field given as null is still missing."""
    from appliance.replay import ReplayReport, read_prompts

    line = {"tenant": "t", "user_id": "u", "text": "hello", "ts": "2026-12-01T00:00:00Z",
            "synthetic": None, "truncated": None, "session_id": None, "mode": None,
            "v": None, "index": None, "request_id": None, "response": None}
    report = ReplayReport()
    lines = [json.dumps(line), json.dumps({**line, "user_id": None})]
    prompts = list(read_prompts(lines, max_text_chars=100, strict=False, report=report))
    assert report.skipped == [(2, "'user_id' is missing.")]
    assert [(p.synthetic, p.session_id, p.request_id) for p in prompts] == [
        (False, None, "line-1")]


@pytest.mark.parametrize("v", [True, False, "1", 2, None])
def test_a_version_that_is_not_the_number_1_is_bad_version(v: object) -> None:
    assert _code(json.dumps({"v": v, "op": "ping"}).encode()) == "bad_version"


def test_an_over_long_text_is_cut_at_a_word_and_keeps_the_whole_prompts_digest() -> None:
    text = "Write to jane.roe@example.com about the invoice. " * 40  # 1,960 characters
    req = parse_request(_ingest(text=text), max_text_chars=1000, now=NOW)
    assert req.prompt is not None and req.prompt.truncated  # the old code: bad_request
    cut = req.prompt.text
    assert len(cut) <= 1000 and text.startswith(cut) and text[len(cut)].isspace()
    assert req.prompt.digest == content_digest(text)  # the next turn's history finds it
    given = parse_request(_ingest(text=cut, truncated=True, text_sha256="A" * 64),
                          max_text_chars=1000, now=NOW).prompt  # cut by the gateway
    assert given is not None and given.truncated and given.digest == "a" * 64
    whole = parse_request(_ingest(), max_text_chars=1000, now=NOW).prompt
    assert whole is not None and not whole.truncated and whole.digest is None
    assert _code(json.dumps(_ingest(text=" " * 1000 + "word")).encode()) == "bad_request"
    assert _code(json.dumps(_ingest(truncated="yes")).encode()) == "bad_request"


def test_an_over_long_tenant_is_named_as_too_long_not_as_empty() -> None:
    """A 1,000-character tenant was refused as "'tenant' must be a non-empty string", which
    sent the gateway's engineer looking for an empty field."""
    with pytest.raises(ProtocolError) as err:
        parse_request(_ingest(tenant="t" * 1000), max_text_chars=1000, now=NOW)
    assert (err.value.code, err.value.message) == (
        "bad_request", "'tenant' is longer than 128 characters.")
    assert parse_request(_ingest(tenant="t" * 128), max_text_chars=1000, now=NOW).tenant


@pytest.mark.parametrize("tenant",
                         ["acme\nops", "acme\tops", "acme\x1b[2J", "acme\x85", "acme\x7f"])
def test_a_tenant_with_a_control_character_is_refused_in_one_sentence(tenant: str) -> None:
    """A tenant is shown as it is in `threads list`, `stats`, the TUI and the logs' tables: a
    newline split its row in two and an escape sequence drove the operator's terminal. It
    was stored as sent."""
    message = "'tenant' contains a control character (a newline, tab or escape)."
    for frame in (_ingest(tenant=tenant),
                  {"v": 1, "op": "update", "request_id": "r1", "tenant": tenant,
                   "model": "m"}):
        with pytest.raises(ProtocolError) as err:
            parse_request(frame, max_text_chars=1000, now=NOW)
        assert (err.value.code, err.value.message) == ("bad_request", message)
    with pytest.raises(InputError, match=r"^'tenant' contains a control character"):
        parse_line(json.dumps(_ingest(tenant=tenant)), max_text_chars=1000)
    assert parse_request(_ingest(tenant="acme ops-2 é"), max_text_chars=1000,
                         now=NOW).tenant == "acme ops-2 é"


def test_a_model_name_with_a_control_character_is_refused() -> None:
    """Model names are listed as sent (`stats models`, the TUI's models screen)."""
    message = "'model' contains a control character (a newline, tab or escape)."
    for frame in (_ingest(model="gpt\r\nx"),
                  {"v": 1, "op": "update", "request_id": "r1", "tenant": "acme",
                   "model": "gpt\x1b]0;x\x07"}):
        with pytest.raises(ProtocolError) as err:
            parse_request(frame, max_text_chars=1000, now=NOW)
        assert (err.value.code, err.value.message) == ("bad_request", message)
    prompt = parse_request(_ingest(model="gpt-4o mini"), max_text_chars=1000, now=NOW).prompt
    assert prompt is not None and prompt.model == "gpt-4o mini"


def test_a_model_is_read_the_same_on_ingest_and_update() -> None:
    """An update refused a blank model ("" from a gateway that did not know it), its
    tokens and cost lost, while an ingest stored "  " as a model's name; a 300-character
    model was "'model' must be a non-empty string." on update, too long on ingest; a
    number was refused on update, stored as "5" on ingest."""
    update = {"v": 1, "op": "update", "request_id": "r1", "tenant": "acme",
              "response": {"output_tokens": 7}}
    for blank in ("", "  "):
        req = parse_request({**update, "model": blank}, max_text_chars=1000, now=NOW)
        assert req.model is None and req.response is not None
        assert req.response.output_tokens == 7
        prompt = parse_request(_ingest(model=blank), max_text_chars=1000, now=NOW).prompt
        assert prompt is not None and prompt.model is None
    for frame in (_ingest(model="m" * 300), {**update, "model": "m" * 300}):
        with pytest.raises(ProtocolError) as err:
            parse_request(frame, max_text_chars=1000, now=NOW)
        assert (err.value.code, err.value.message) == (
            "bad_request", "'model' is longer than 256 characters.")
    for frame in (_ingest(model=5), {**update, "model": 5}):
        with pytest.raises(ProtocolError, match=r"^'model' must be a string\.$"):
            parse_request(frame, max_text_chars=1000, now=NOW)
    with pytest.raises(ProtocolError, match="needs 'response' fields or 'model'"):
        parse_request({**update, "response": None, "model": ""}, max_text_chars=1000, now=NOW)


@pytest.mark.parametrize("field", ["text", "history"])
def test_an_update_carrying_a_prompt_is_refused_without_echoing_it(field: str) -> None:
    """docs/protocol.md: an update accepts no text. One carrying `text` or `history` was
    answered `updated`, the prompt dropped unseen, so a gateway sending the turn that way
    never learned it was not recorded."""
    value = ("Canary zebra-41 asks" if field == "text"
             else [{"role": "user", "content": "Canary zebra-41 asks"}])
    obj = {"v": 1, "op": "update", "tenant": "acme", "request_id": "r-1",
           "response": {"output_tokens": 5}, field: value}
    with pytest.raises(ProtocolError) as err:
        parse_request(obj, max_text_chars=1000, now=NOW)
    assert err.value.code == "bad_request" and "zebra" not in str(err.value)
    assert f"no '{field}'" in str(err.value)


@pytest.mark.parametrize("feedback", [{}, {"rating": 9}, {"rating": True},
                                      {"abandoned": "no"}])
def test_a_bad_feedback_is_answered_under_its_request_id(feedback: dict[str, object]) -> None:
    """A client that matches replies by request id (docs/protocol.md: a valid id is
    echoed) must find its refused feedback: the old code answered these with null."""
    frame = json.dumps({"v": 1, "op": "feedback", "request_id": "req-8812", "tenant": "acme",
                        **feedback}).encode()
    with pytest.raises(ProtocolError) as err:
        parse_request(decode_frame(frame), max_text_chars=1000, now=NOW)
    assert (err.value.code, err.value.request_id) == ("bad_request", "req-8812")
