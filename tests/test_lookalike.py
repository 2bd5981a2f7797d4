"""Structured PII written with look-alike characters, through `semtrace redact` and the socket.

Each form must be found, and the placeholder must replace exactly the
original characters (zero-width spaces, fullwidth digits and all).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ingest_and_read_back, scan_for

ZW = "\u200b"  # zero-width space
# (id, text, the original characters that must become the placeholder, entity)
LOOKALIKES = [
    ("card-dots", "Charge my card 4111.1111.1111.1111 today.", "4111.1111.1111.1111",
     "CREDIT_CARD"),
    ("card-spaced-dashes", "Charge my card 4111 - 1111 - 1111 - 1111 today.",
     "4111 - 1111 - 1111 - 1111", "CREDIT_CARD"),
    ("card-zero-width", f"Charge my card 4111{ZW}1111{ZW}1111{ZW}1111 today.",
     f"4111{ZW}1111{ZW}1111{ZW}1111", "CREDIT_CARD"),
    ("card-fullwidth", "Charge my card ４１１１ １１１１ １１１１ １１１１ today.",
     "４１１１ １１１１ １１１１ １１１１", "CREDIT_CARD"),
    ("card-letter-l-for-one", "Charge my card 4111 l111 1111 1111 today.",
     "4111 l111 1111 1111", "CREDIT_CARD"),
    ("phone-zero-width", f"Call me on 212{ZW}-555{ZW}-0187 tonight.",
     f"212{ZW}-555{ZW}-0187", "PHONE_NUMBER"),
    ("phone-spaced-en-dash", "Call me on (212) 555 \u2013 0187 tonight.",
     "(212) 555 \u2013 0187", "PHONE_NUMBER"),
    ("phone-spaced-dots", "Call me on 212 . 555 . 0187 tonight.", "212 . 555 . 0187",
     "PHONE_NUMBER"),
    ("phone-fullwidth", "Call me on ２１２－５５５－０１８７ tonight.", "２１２－５５５－０１８７",
     "PHONE_NUMBER"),
    ("email-spaced", "Write to jane . roe @ example . com about it.",
     "jane . roe @ example . com", "EMAIL_ADDRESS"),
    ("email-at-dot", "Write to jane.roe at example dot com about it.",
     "jane.roe at example dot com", "EMAIL_ADDRESS"),
    ("email-bracketed", "Write to jane [at] example [dot] org about it.",
     "jane [at] example [dot] org", "EMAIL_ADDRESS"),
    ("email-fullwidth-at", "Write to jane＠example.com about it.", "jane＠example.com",
     "EMAIL_ADDRESS"),
    ("email-zero-width", f"Write to jane{ZW}@example{ZW}.com about it.",
     f"jane{ZW}@example{ZW}.com", "EMAIL_ADDRESS"),
    ("iban-dots", "Wire it to DE89.3704.0044.0532.0130.00 by Monday.",
     "DE89.3704.0044.0532.0130.00", "IBAN_CODE"),
    ("iban-spaced-dashes", "Wire it to DE89 - 3704 - 0044 - 0532 - 0130 - 00 by Monday.",
     "DE89 - 3704 - 0044 - 0532 - 0130 - 00", "IBAN_CODE"),
    ("iban-zero-width", f"Wire it to DE89{ZW}3704{ZW}0044{ZW}0532{ZW}0130{ZW}00 by Monday.",
     f"DE89{ZW}3704{ZW}0044{ZW}0532{ZW}0130{ZW}00", "IBAN_CODE"),
    ("ssn-dots", "My SSN is 536.22.8467, is that safe?", "536.22.8467", "US_SSN"),
    ("ssn-spaced-dashes", "My SSN is 536 - 22 - 8467, is that safe?", "536 - 22 - 8467",
     "US_SSN"),
    ("ssn-spaces", "My SSN is 536 22 8467, is that safe?", "536 22 8467", "US_SSN"),
    ("ssn-zero-width", f"My SSN is 536{ZW}-22{ZW}-8467, is that safe?",
     f"536{ZW}-22{ZW}-8467", "US_SSN"),
    ("ip-spaced-dots", "The server 192 . 168 . 14 . 27 keeps timing out.",
     "192 . 168 . 14 . 27", "IP_ADDRESS"),
    ("ip-bracketed-dots", "The server 192[.]168[.]14[.]27 keeps timing out.",
     "192[.]168[.]14[.]27", "IP_ADDRESS"),
    ("ip-spelled-dots", "The server 192 dot 168 dot 14 dot 27 keeps timing out.",
     "192 dot 168 dot 14 dot 27", "IP_ADDRESS"),
    ("ip-zero-width", f"The server 192{ZW}.168{ZW}.14.27 keeps timing out.",
     f"192{ZW}.168{ZW}.14.27", "IP_ADDRESS"),
    ("ip-dashed-hostname", "ssh into ip-192-168-14-27 and restart it.", "ip-192-168-14-27",
     "IP_ADDRESS"),
]
IDS = [case[0] for case in LOOKALIKES]


def _digits(value: str) -> str:
    """The ASCII digits (and letters) a normalised value carries: what must not survive."""
    from appliance.redact.normalize import normalize

    return "".join(c for c in normalize(value).text if c.isalnum())


@pytest.fixture(scope="module")
def cli_rows(redactor, tmp_path_factory, monkeypatch_module) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """`semtrace redact` over every look-alike line (the session's redactor)."""
    from click.testing import CliRunner

    import appliance.cli.redact as cli_redact
    from appliance.cli import cli

    monkeypatch_module.setattr(cli_redact, "_load_redactor", lambda cache_dir: redactor)
    tmp = tmp_path_factory.mktemp("lookalike-cli")
    src, out = tmp / "in.jsonl", tmp / "out.jsonl"
    src.write_text("".join(json.dumps({"index": name, "text": text}, ensure_ascii=False) + "\n"
                           for name, text, _, _ in LOOKALIKES), encoding="utf-8")
    result = CliRunner().invoke(cli, ["redact", str(src), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return {row["index"]: row for row in map(json.loads, out.read_text("utf-8").splitlines())}


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.parametrize(("name", "text", "value", "entity"), LOOKALIKES, ids=IDS)
def test_semtrace_redact_replaces_exactly_the_lookalike_characters(
        cli_rows, name, text, value, entity):  # type: ignore[no-untyped-def]
    row = cli_rows[name]
    start = text.index(value)
    assert [(s["start"], s["end"], s["entity_type"]) for s in row["spans"]] == [
        (start, start + len(value), entity)]
    assert row["redacted"] == text.replace(value, f"<{entity}_1>")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    """Every look-alike prompt sent through the service's socket, then read back decrypted."""
    return ingest_and_read_back(tmp_path_factory.mktemp("lookalike-svc"),
                                [(name, text) for name, text, _, _ in LOOKALIKES],
                                user_prefix="la")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "text", "value", "entity"), LOOKALIKES, ids=IDS)
def test_the_socket_stores_lookalike_pii_only_as_a_placeholder(
        ingested, name, text, value, entity):  # type: ignore[no-untyped-def]
    data, stored, dump = ingested
    assert stored[name] == text.replace(value, f"<{entity}_1>")
    assert value not in dump and _digits(value) not in "".join(c for c in dump if c.isalnum())
    assert scan_for(data, [value, _digits(value)]) == []


def test_normalising_keeps_a_map_to_the_original_characters() -> None:
    from appliance.redact.normalize import normalize

    text = f"Ｃａｒｄ 4111{ZW}1111 and e\u0301te\u0301 ２０"
    norm = normalize(text)
    assert norm.text == "Card 41111111 and été 20"
    start = norm.text.index("41111111")
    assert norm.original_span(start, start + 8) == (5, 14)
    s2 = norm.text.index("20")
    assert text[slice(*norm.original_span(s2, s2 + 2))] == "２０"
    assert text[slice(*norm.original_span(norm.text.index("été"),
                                          norm.text.index("été") + 3))] == "e\u0301te\u0301"


@pytest.mark.parametrize("text", [
    "look at google dot com for the answer",
    "The meeting is on 2024-03-15 at 10:30 in room 4.",
    "Version 3.14 of the tool shipped with 2 . 5 GB of data.",
    "We met @keeneniwayans . It was fun",
])
def test_lookalike_rules_leave_ordinary_text_alone(redactor, text):  # type: ignore[no-untyped-def]
    found = {h.entity_type for h in redactor.analyze(text)}
    assert found & {"EMAIL_ADDRESS", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "CREDIT_CARD",
                    "PHONE_NUMBER"} == set()
