"""The opener signal: how likely a prompt is to open a conversation on its own. Pure.

Every conversation's first turn is an opener and every later turn depends on
context, so any threaded stream is labelled training data. A logistic
regression over the prompt's embedding and a few generic text features
(`TEXT_FEATURES`), trained offline by bench/train_linker.py on all sources and
shipped inside `policies/linker-weights.json` as plain arrays, gives the
probability; the linker uses it as one of its features. A follow-up such as
"Just for two of us." scores low however little it shares with the turn before.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from appliance.cues import ack_then_request, cue_names, placeholder_types, word_count

CUES = ("pronoun", "demonstrative", "ellipsis", "elaboration", "correction", "acknowledgement",
        "management", "question", "deictic", "answer", "opening", "greeting", "closing",
        "unresolved")
TEXT_FEATURES = ("words", "short", "question_mark", "placeholders", "ack_then_request",
                 *(f"cue_{c}" for c in CUES))


def text_features(text: str) -> list[float]:
    """The generic text features of a (redacted) prompt, in `TEXT_FEATURES` order."""
    cues = cue_names(text)
    words = word_count(text)
    return [math.log1p(words), float(words <= 3), float("?" in text),
            float(min(len(placeholder_types(text)), 3)), float(ack_then_request(text)),
            *(float(c in cues) for c in CUES)]


def design_row(vector: np.ndarray, text: str) -> np.ndarray:
    """The model's input: the embedding followed by the text features."""
    return np.concatenate([np.asarray(vector, dtype=np.float64),
                           np.asarray(text_features(text), dtype=np.float64)])


class OpenerModel:
    """Logistic regression over `design_row`, from the arrays the training script wrote."""

    def __init__(self, spec: dict[str, Any]) -> None:
        if list(spec["text_features"]) != list(TEXT_FEATURES):
            raise ValueError("the opener model was trained on other text features")
        self.mean = np.asarray(spec["mean"], dtype=np.float64)
        self.scale = np.asarray(spec["scale"], dtype=np.float64)
        self.coef = np.asarray(spec["coef"], dtype=np.float64)
        self.intercept = float(spec["intercept"])
        if not self.mean.shape == self.scale.shape == self.coef.shape:
            raise ValueError("the opener model's arrays differ in length")
        # The scaler folded into the weights: one dot product per call (the linker asks for
        # every new turn's closer probability, so this runs several times per prompt).
        w = self.coef / self.scale
        n = len(TEXT_FEATURES)
        self._w_vec = w[:-n].astype(np.float32)
        self._w_text = w[-n:].tolist()
        self._bias = self.intercept - float(self.mean @ w)

    def proba(self, vector: np.ndarray, text: str) -> float:
        """Probability that the prompt opens a conversation."""
        if vector.shape != self._w_vec.shape:
            raise ValueError("the opener model was trained on another embedding size")
        z = (float(np.dot(vector.astype(np.float32, copy=False), self._w_vec)) + self._bias
             + sum(a * b for a, b in zip(self._w_text, text_features(text), strict=True)))
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))
