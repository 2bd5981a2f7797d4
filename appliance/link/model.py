"""The learned models, evaluated from the plain arrays of the weights file (numpy only)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config import CorrelationSettings, policy_dir
from appliance.errors import ConfigError
from appliance.link.features import FEATURES, LinkInput
from appliance.link.trees import CompiledTrees
from appliance.opener import OpenerModel
from appliance.records import Candidate


class PairModel:
    """The learned scorer: logistic regression or boosted trees, as numpy arrays, and the
    opener model whose probability is one of its features."""

    def __init__(self, spec: dict[str, Any]) -> None:
        if list(spec["features"]) != list(FEATURES):
            raise ValueError("the weights file was trained on other features")
        self.opener = OpenerModel(spec["opener"]) if spec.get("opener") else None
        # The same kind of model, trained on "was this the conversation's last turn?".
        self.closer = OpenerModel(spec["closer"]) if spec.get("closer") else None
        self._closed: dict[int, float] = {}  # per record id: a turn's text never changes
        dec = spec.get("decision")
        self.decision = None if not dec else (
            np.asarray(dec["mean"], dtype=np.float64), np.asarray(dec["scale"], dtype=np.float64),
            np.asarray(dec["coef"], dtype=np.float64), float(dec["intercept"]))
        if dec and list(dec["features"]) != list(DECISION_FEATURES):
            raise ValueError("the decision model was trained on other features")
        self.kind = spec["kind"]
        self.mean = np.asarray(spec["scaler"]["mean"], dtype=np.float64)
        self.scale = np.asarray(spec["scaler"]["scale"], dtype=np.float64)
        # (x - 0) / 1 is x, bit for bit: the trees' exporter writes an identity scaler
        self.scaled = not (np.all(self.mean == 0.0) and np.all(self.scale == 1.0))
        self.intercept = float(spec["intercept"])
        if self.kind == "logistic":
            self.coef = np.asarray(spec["coef"], dtype=np.float64)
        elif self.kind == "gbm":
            self.trees = CompiledTrees(spec["trees"])
        else:
            raise ValueError(f"unknown model kind {self.kind!r}")

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Link probability per row of the feature matrix."""
        z = (x - self.mean) / self.scale if self.scaled else x
        if self.kind == "logistic":
            raw = z @ self.coef + self.intercept
        else:
            raw = self.intercept + self.trees.raw(z)
        return 1.0 / (1.0 + np.exp(-raw))

    def link_proba(self, masses: Sequence[float], opener: float, row: np.ndarray) -> float:
        """Probability that the prompt continues some earlier turn: the decision model over
        the candidates' summed probabilities and a few prompt features, else their sum."""
        total = min(sum(masses), 1.0)
        if self.decision is None:
            return total
        mean, scale, coef, intercept = self.decision
        z = float(((decision_row(masses, opener, row) - mean) / scale) @ coef) + intercept
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    def opener_proba(self, q: LinkInput) -> float:
        """The prompt's opener probability (given, else from the opener model, else 0.5)."""
        if q.opener is not None:
            return q.opener
        return self.opener.proba(q.vector, q.text) if self.opener is not None else 0.5


    def closer_proba(self, c: Candidate) -> float:
        """Probability that an earlier turn closed its conversation (0.5 without a model)."""
        if self.closer is None:
            return 0.5
        p = self._closed.get(c.record_id)
        if p is None:
            if len(self._closed) >= 200_000:
                self._closed.clear()
            p = self._closed[c.record_id] = self.closer.proba(c.vector, c.text)
        return p


def weights_path(settings: CorrelationSettings) -> Path:
    """The weights file the policy names (relative: in the policy folder)."""
    path = Path(settings.weights_file)
    return path if path.is_absolute() else policy_dir() / path


def weights_digest(settings: CorrelationSettings) -> str | None:
    """SHA-256 of the weights file as it is now; None when it cannot be read. A reload
    compares it with the one taken at start: the model is loaded only then."""
    try:
        return hashlib.sha256(weights_path(settings).read_bytes()).hexdigest()
    except OSError:
        return None


def load_model(settings: CorrelationSettings) -> PairModel:
    """The weights file named by the policy; ConfigError names the file when unusable."""
    path = weights_path(settings)
    try:
        return PairModel(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ConfigError(f"The linker weights file {path} is missing.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"The linker weights file {path} is not UTF-8 text.") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"The linker weights file {path} is unusable: {exc}.") from None
    except OSError as exc:
        raise ConfigError(f"The linker weights file {path} cannot be read "
                          f"({exc.strerror}).") from None


# The first five as log-odds (masses, the prompt's opener and the best thread's closer
# probability), the rest as the best candidate's feature row has them.
DECISION_FEATURES = ("total", "best_thread", "runner_up", "opener", "thread_closer", "q_gap_last",
                     "thread_gap", "sim", "q_active_threads", "q_words", "q_unresolved")


_CLOSER = FEATURES.index("thread_closer")
_ROW_INPUTS = tuple(FEATURES.index(n) for n in DECISION_FEATURES[5:])


def _logit(v: float) -> float:
    v = min(max(v, 1e-4), 1.0 - 1e-4)
    return math.log(v / (1.0 - v))


def decision_row(masses: Sequence[float], opener: float, row: np.ndarray) -> np.ndarray:
    """Input of the decision model: per-thread masses (largest first), the opener probability
    and the best candidate's feature row."""
    ranked = sorted(masses, reverse=True) + [0.0]
    return np.array([_logit(sum(masses)), _logit(ranked[0]), _logit(ranked[1]), _logit(opener),
                     _logit(float(row[_CLOSER])),
                     *(float(row[k]) for k in _ROW_INPUTS)])

