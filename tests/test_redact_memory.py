"""Redaction keeps nothing of a prompt in memory once it has answered: spaCy's vocabulary
kept every new word it was shown (the whole e-mail address, the names, before any
redaction) for the life of the service, where no erasure reached it, and grew with
every new word of the traffic."""

from __future__ import annotations

import secrets
from typing import Any

from conftest import make_prompt


def test_the_redactors_vocabulary_keeps_no_word_of_the_prompts_it_saw(
        pipeline: Any, redactor: Any) -> None:
    vocab = redactor._analyzer.nlp_engine.nlp["en"].vocab.strings
    tag = secrets.token_hex(3)
    name, mail = f"Quorvath{tag}", f"q.vexmoor{tag}@example.com"
    before = len(vocab)
    out = pipeline.process([make_prompt(f"My colleague {name} Vexmoor{tag} asked me to mail "
                                        f"{mail} about the zorblaxian{tag} turbine.",
                                        user="user17")])
    assert out[0].record_id  # stored, redacted
    stored = pipeline.store.records("1=1", ())[0].text
    assert mail not in stored and "<EMAIL_ADDRESS_1>" in stored
    assert not [w for w in (name, mail, f"Vexmoor{tag}", f"zorblaxian{tag}") if w in vocab]
    for i in range(40):  # new words every prompt: the vocabulary does not grow with them
        redactor.analyze(f"Ticket {secrets.token_hex(4)} from Zyx{secrets.token_hex(3)} "
                         f"about order {i}.")
    assert len(vocab) == before
    # nor when a batch is redacted at once (the service's batches)
    batch = [make_prompt(f"Ask Zyx{secrets.token_hex(3)} Vexmoor{secrets.token_hex(3)} at "
                         f"z{secrets.token_hex(3)}@example.com", request_id=f"m{i}")
             for i in range(20)]
    assert all("@" not in r.text for r in redactor.redact_many(batch))
    assert len(vocab) == before
