"""Train the linker offline (scikit-learn, dev-only); write policies/linker-weights.json.

usage: nice .venv/bin/python bench/train_linker.py [--kind gbm|logistic] [--passes 1|2]
       [--thresholds 0.3,0.4,0.5,0.6] [--no-loso] [--no-user-cv] [--only-source SRC]
       [--pause-openers N] [--pause-resumes N] [--out policies/linker-weights.json]

Trains on every stream in ../shared/bench/threads-*.jsonl (dev + wide; read from
there, never copied). Features come from the pipeline's own code: every prompt
goes through `Redactor.redact`, `entity_keys` and `LlamaEmbedder.embed` (cached
under /tmp, keyed by the stream, appliance/redact/, the redaction policy and the
model), and the rows are built by `appliance.link.features` over `Candidate`
histories shaped as the pipeline shapes them (same user only, within the
horizon, oldest first). Only the input fields (user, session, ts, text) feed the
features; the gold thread and parent give the labels.

Two models are learned. The opener model (appliance/opener.py: logistic
regression over the embedding and generic text features) predicts whether a
prompt opens a conversation; its probability is a feature of the pairwise model
(boosted trees). The opener probabilities that feed the pairwise model's
training rows are cross-fitted (from an opener model that never saw that
prompt's source), as they will be on unseen traffic.

Evaluation, printed as JSON and a table:
* leave-one-source-out (LOSO): for each source, both models are trained on the
  turns of the other sources only (the held-out source's turns are removed from
  the training histories), then every user's whole stream is decoded by the
  run-time linker and the held-out source's prompts are scored
  (`evaluate.score` on that source). The threshold is chosen by LOSO.
* grouped 5-fold cross-validation by user (no user in both train and test).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from calibration import parse_rule
from pause_openers import pause_users, resume_users

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.config import CorrelationSettings, load_policies  # noqa: E402
from appliance.evaluate import score  # noqa: E402
from appliance.link import (  # noqa: E402
    DECISION_FEATURES,
    FEATURES,
    LinkInput,
    PairModel,
    VectorCache,
    decide,
    decision_row,
    features,
)
from appliance.link.calibrate import Choice, Rule, Tally, choose, outcome  # noqa: E402
from appliance.opener import TEXT_FEATURES, design_row  # noqa: E402
from appliance.records import Candidate  # noqa: E402

BENCH = REPO.parent / "shared" / "bench"
if not BENCH.exists():  # a worktree under /work/wt/<branch>
    BENCH = REPO.parents[1] / "shared" / "bench"
CACHE_DIR = Path(tempfile.gettempdir()) / "semtrace-linker-cache"
STREAM_STRIDE = 1_000_000  # global index = stream number * stride + index in the stream
OPENER_C = 0.1
GBM = {"trees": 200, "rate": 0.08, "depth": 5, "leaves": 16, "min_leaf": 200, "l2": 3.0,
       "max_features": 1.0}
MONOTONE: dict[str, int] = {}  # feature -> -1 / 1: the pair probability may only fall / rise
HEADLINE = ("pair_F1", "newthread_F1", "parent_acc")


@dataclass(frozen=True)
class Turn:
    """One prompt as the linker sees it, plus its gold answer (labels only)."""

    index: int  # global
    user: str
    source: str
    ts: datetime
    vector: np.ndarray
    text: str  # redacted
    session_key: str | None
    entity_keys: tuple[str, ...]
    gold_thread: str
    gold_parent: int | None
    opener: float = 0.5  # cross-fitted opener probability, set per fold
    closer: float = 0.5  # cross-fitted probability that it closed its conversation, ditto


def _cache_key(gold: Path, model_id: str) -> str:
    h = hashlib.sha256()
    app = REPO / "appliance"
    for path in (gold, *sorted((app / "redact").glob("*.py")),
                 REPO / "policies" / "redaction.toml"):
        if path.exists():  # the redaction code and policy: features follow them
            h.update(path.read_bytes())
    h.update(model_id.encode())
    return h.hexdigest()[:16]


def prepare(gold: Path) -> list[dict[str, Any]]:
    """Redacted text, entity keys, session key and vector per prompt, via the pipeline's code."""
    from appliance.embed import LlamaEmbedder, load_manifest
    from appliance.ingest import parse_prompt
    from appliance.keys import Keyring
    from appliance.redact import Redactor, entity_keys

    pol = load_policies()
    path = CACHE_DIR / f"{_cache_key(gold, load_manifest().model_id)}.json"
    if path.exists():
        rows: list[dict[str, Any]] = json.loads(path.read_text())
        return rows
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    ring = Keyring(b"\x00" * 32)  # digests are only compared with each other
    redactor, embedder = Redactor(pol.redaction), LlamaEmbedder(pol.correlation.embedding)
    raw = [json.loads(line) for line in gold.read_text().splitlines() if line.strip()]
    out: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for start in range(0, len(raw), 64):  # the replay batch size
        batch = raw[start:start + 64]
        prompts = [parse_prompt({k: r.get(k) for k in ("index", "tenant", "user_id",
                                                       "session_id", "ts", "text")},
                                max_text_chars=pol.correlation.max_text_chars,
                                default_request_id=f"line-{r['index']}") for r in batch]
        red = [redactor.redact(p) for p in prompts]
        vecs, _ = embedder.embed([r.text for r in red])
        for r, p, rd, v in zip(batch, prompts, red, vecs, strict=True):
            out.append({"index": r["index"], "user": r["user_id"], "ts": r["ts"], "text": rd.text,
                        "session_key": ring.session_key(p.tenant, p.session_id)
                        if p.session_id else None,
                        "entity_keys": list(entity_keys(rd, lambda v: ring.entity_key(
                            p.tenant, v))),  # noqa: B023
                        "vector": [float(x) for x in v]})
        print(f"  {gold.name}: prepared {len(out)}/{len(raw)} ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr)
    path.write_text(json.dumps(out))
    return out


def load_streams(paths: Sequence[Path]) -> tuple[list[dict[str, Any]], dict[str, list[Turn]]]:
    """Gold rows (global indices) and each user's turns in stream order, over all streams."""
    gold_rows: list[dict[str, Any]] = []
    users: dict[str, list[Turn]] = defaultdict(list)
    for k, gold in enumerate(paths):
        off = k * STREAM_STRIDE
        rows = [json.loads(line) for line in gold.read_text().splitlines() if line.strip()]
        by_index = {g["index"]: g for g in rows}
        for g in rows:
            parent = g["gold_parent_index"]
            gold_rows.append({**g, "index": g["index"] + off, "user_id": f"{k}:{g['user_id']}",
                              "gold_thread_id": f"{k}:{g['gold_thread_id']}",
                              "gold_parent_index": None if parent is None else parent + off})
        for r in prepare(gold):
            g = by_index[r["index"]]
            user = f"{k}:{r['user']}"
            parent = g["gold_parent_index"]
            users[user].append(Turn(
                index=r["index"] + off, user=user, source=g["source"],
                ts=datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).astimezone(UTC),
                vector=np.asarray(r["vector"], dtype=np.float32), text=r["text"],
                session_key=r["session_key"], entity_keys=tuple(r["entity_keys"]),
                gold_thread=f"{k}:{g['gold_thread_id']}",
                gold_parent=None if parent is None else parent + off))
    return gold_rows, users


# ---- the opener model -------------------------------------------------------------------

class Openers:
    """Opener models (or closer models: `closer=True`) fitted on subsets of all turns,
    memoised by what was left out.

    Opener: the turn is its conversation's first. Closer: its last (the user ended the
    conversation there: "thanks, bye", "looks good to me")."""

    def __init__(self, users: dict[str, list[Turn]], *, closer: bool = False,
                 x: np.ndarray | None = None) -> None:
        turns = [t for ts in users.values() for t in ts]
        self.pos = {t.index: i for i, t in enumerate(turns)}
        self.x = x if x is not None else np.vstack([design_row(t.vector, t.text) for t in turns])
        if closer:
            last = {t.gold_thread: t.index for t in turns}
            self.y = np.array([last[t.gold_thread] == t.index for t in turns], dtype=np.int8)
        else:
            self.y = np.array([t.gold_parent is None for t in turns], dtype=np.int8)
        self._memo: dict[Any, Any] = {}

    def fit(self, keep: np.ndarray) -> Any:
        """(scaler, logistic regression) on the rows where `keep` is true."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        sc = StandardScaler().fit(self.x[keep])
        sc.scale_[sc.scale_ == 0] = 1.0
        lr = LogisticRegression(C=OPENER_C, max_iter=3000).fit(sc.transform(self.x[keep]),
                                                                self.y[keep])
        return sc, lr

    def crossfit(self, label: dict[int, str], held: str | None) -> dict[int, float]:
        """Opener probability per turn, each from a model that saw neither its label group
        nor the held-out group."""
        labs = np.array([label[i] for i in sorted(self.pos, key=self.pos.__getitem__)])
        out: dict[int, float] = {}
        inv = {p: i for i, p in self.pos.items()}
        for g in sorted(set(labs.tolist())):
            left_out = frozenset({g, held} - {None})
            if left_out not in self._memo:
                self._memo[left_out] = self.fit(~np.isin(labs, list(left_out)))
            sc, lr = self._memo[left_out]
            rows = np.flatnonzero(labs == g)
            p = lr.predict_proba(sc.transform(self.x[rows]))[:, 1]
            out.update({inv[int(r)]: float(v) for r, v in zip(rows, p, strict=True)})
        return out

    def auc(self, probs: dict[int, float], subset: set[int]) -> float:
        from sklearn.metrics import roc_auc_score

        ix = sorted(subset)
        return float(roc_auc_score(self.y[[self.pos[i] for i in ix]], [probs[i] for i in ix]))

    def export(self, keep: np.ndarray | None = None) -> dict[str, Any]:
        """The model fitted on every turn (or those `keep` marks), as the arrays
        `OpenerModel` evaluates."""
        sc, lr = self.fit(np.ones(len(self.y), dtype=bool) if keep is None else keep)
        return {"kind": "logistic", "text_features": list(TEXT_FEATURES),
                "mean": sc.mean_.tolist(), "scale": sc.scale_.tolist(),
                "coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0]),
                "C": OPENER_C}


def with_openers(users: dict[str, list[Turn]], probs: dict[int, float],
                 closers: dict[int, float]) -> dict[str, list[Turn]]:
    return {u: [replace(t, opener=probs[t.index], closer=closers[t.index]) for t in ts]
            for u, ts in users.items()}


# ---- the pairwise model -----------------------------------------------------------------

Visit = Callable[[Turn, list[Candidate]], tuple[str | None, int | None]]


def walk(turns: Sequence[Turn], s: CorrelationSettings, visit: Visit) -> None:
    """Feed a user's turns through a history shaped as the pipeline shapes it.

    `visit` returns (thread id or None for new, parent record id) for each turn.
    """
    history: list[Candidate] = []
    horizon = timedelta(hours=s.horizon_hours)
    for t in turns:
        history = [c for c in history if c.ts >= t.ts - horizon]
        thread, parent = visit(t, [c for c in history if c.ts <= t.ts])
        history.append(Candidate(record_id=t.index, request_id=str(t.index),
                                 thread_id=thread or f"p{t.index}", ts=t.ts, vector=t.vector,
                                 text=t.text, session_key=t.session_key, parent_id=parent,
                                 entity_keys=t.entity_keys))


def _query(t: Turn) -> LinkInput:
    return LinkInput(ts=t.ts, vector=t.vector, text=t.text, session_key=t.session_key,
                     entity_keys=t.entity_keys, opener=t.opener)


@dataclass(frozen=True)
class PromptRows:
    """One prompt's shortlisted candidates: feature rows, labels, their threads."""

    user: str
    source: str
    x: np.ndarray
    y: np.ndarray
    threads: tuple[str, ...]
    followup: bool
    opener: float


def rows_for(users: dict[str, list[Turn]], s: CorrelationSettings,
             model: PairModel | None) -> list[PromptRows]:
    """Feature rows and labels; histories threaded by gold (model None) or by the model."""
    out: list[PromptRows] = []
    cache = VectorCache()
    closed = {t.index: t.closer for ts in users.values() for t in ts}

    def closer(c: Candidate) -> float:
        return closed[c.record_id]

    for turns in users.values():
        def visit(t: Turn, cands: list[Candidate]) -> tuple[str | None, int | None]:
            if cands:
                pick, x, _, _ = features(_query(t), cands, s, cache, t.opener, closer)
                out.append(PromptRows(
                    user=t.user, source=t.source, x=x, opener=t.opener,
                    followup=t.gold_parent is not None,
                    y=np.array([cands[i].record_id == t.gold_parent for i in pick],
                               dtype=np.int8),
                    threads=tuple(cands[i].thread_id for i in pick)))
            if model is not None:
                link = decide(_query(t), cands, model, s, cache) if cands else None
                return (link.thread_id, link.parent_id) if link else (None, None)
            return t.gold_thread, t.gold_parent
        walk(turns, s, visit)
    return out


def _stack(prs: Sequence[PromptRows]) -> tuple[np.ndarray, np.ndarray]:
    return np.vstack([r.x for r in prs]), np.concatenate([r.y for r in prs])


def source_weights(prs: Sequence[PromptRows], power: float) -> np.ndarray:
    """Per prompt: (mean prompts per source / the prompt's source's prompts) ** power, so
    that with power 1 every source weighs the same however many prompts it has."""
    n: dict[str, int] = defaultdict(int)
    for r in prs:
        n[r.source] += 1
    mean = len(prs) / len(n)
    return np.array([(mean / n[r.source]) ** power for r in prs])


def _row_weights(prs: Sequence[PromptRows]) -> np.ndarray | None:
    power = _STATE.get("source_power", 0.0)
    if not power:
        return None
    w = source_weights(prs, power)
    return np.concatenate([np.full(len(r.y), v) for r, v in zip(prs, w, strict=True)])


def fit_decision(prs: Sequence[PromptRows], kind: str) -> dict[str, Any]:
    """The continue-or-new model over pair probabilities cross-fitted in two user halves."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    names = sorted({r.user for r in prs})
    halves = [set(names[0::2]), set(names[1::2])]
    xs, ys = [], []
    for half in halves:
        part = [r for r in prs if r.user not in half]
        model = PairModel(fit(*_stack(part), kind, _row_weights(part)))
        for r in (r for r in prs if r.user in half):
            p = model.proba(r.x)
            mass: dict[str, float] = {}
            for th, v in zip(r.threads, p, strict=True):
                mass[th] = mass.get(th, 0.0) + float(v)
            best = max(mass, key=mass.__getitem__)
            b = max((j for j, th in enumerate(r.threads) if th == best), key=lambda j: p[j])
            xs.append(decision_row(list(mass.values()), r.opener, r.x[b]))
            ys.append(r.followup)
    x, y = np.vstack(xs), np.array(ys, dtype=np.int8)
    sc = StandardScaler().fit(x)
    sc.scale_[sc.scale_ == 0] = 1.0
    power = _STATE.get("source_power", 0.0)
    order = [r for half in halves for r in prs if r.user in half]
    w = source_weights(order, power) if power else None
    lr = LogisticRegression(C=1.0, max_iter=3000).fit(sc.transform(x), y, sample_weight=w)
    return {"kind": "logistic", "features": list(DECISION_FEATURES), "mean": sc.mean_.tolist(),
            "scale": sc.scale_.tolist(), "coef": lr.coef_[0].tolist(),
            "intercept": float(lr.intercept_[0])}


def predict(users: dict[str, list[Turn]], s: CorrelationSettings,
            model: PairModel) -> dict[int, dict[str, Any]]:
    """Decode users' streams with the run-time linker; predictions in the scorer's format."""
    pred: dict[int, dict[str, Any]] = {}
    cache = VectorCache()
    for turns in users.values():
        def visit(t: Turn, cands: list[Candidate]) -> tuple[str | None, int | None]:
            link = decide(_query(t), cands, model, s, cache)
            thread = link.thread_id or f"p{t.index}"
            ev = link.evidence or {}
            pred[t.index] = {"index": t.index, "thread_id": thread,
                             "parent_index": link.parent_id, "position": link.position,
                             "score": ev.get("score"), "opener": ev.get("opener"),
                             "closer": (ev.get("features") or {}).get("thread_closer")}
            return thread, link.parent_id
        walk(turns, s, visit)
    return pred


def tally_history(users: dict[str, list[Turn]], s: CorrelationSettings, model: PairModel,
                  counted: set[int]) -> Tally:
    """What a deployment whose gateway sends `history` tallies for these users' `counted`
    prompts (appliance/link/calibrate.py): each prompt over its history as `history`
    threads it (the gold threads), the content linker asked for its best thread."""
    tally = Tally()
    cache = VectorCache()
    for turns in users.values():
        def visit(t: Turn, cands: list[Candidate]) -> tuple[str | None, int | None]:
            nonlocal tally
            if cands and t.index in counted:
                link = decide(_query(t), cands, model, s, cache, threshold=0.0)
                taught = outcome(t.gold_thread if t.gold_parent is not None else None,
                                 link.thread_id)
                if taught is not None:
                    tally = tally.add(link.score or 0.0, taught)
            return t.gold_thread, t.gold_parent
        walk(turns, s, visit)
    return tally


def calibrated(users: dict[str, list[Turn]], s: CorrelationSettings, model: PairModel,
               test: set[int], rules: dict[str, Rule]
               ) -> dict[str, tuple[dict[int, dict[str, Any]], list[HalfChoice]]]:
    """Per rule: decisions on every user, each half of the users (split by a hash of the
    user) at the threshold the rule calibrates on the other half's history-linked `test`
    prompts (the held-out source's: the deployment is that source)."""
    order = sorted(users, key=lambda u: hashlib.sha256(u.encode()).hexdigest())
    halves = [{u: users[u] for u in order[0::2]}, {u: users[u] for u in order[1::2]}]
    tallies = [tally_history(half, s, model, test) for half in halves]
    decoded: dict[tuple[int, float], dict[int, dict[str, Any]]] = {}  # (half, threshold)
    out = {}
    for name, rule in rules.items():
        pred: dict[int, dict[str, Any]] = {}
        choices = []
        for h in (0, 1):
            choice = choose(tallies[h], s.link_threshold, s.calibration.min_decisions,
                            rule=rule)
            choices.append((choice, tallies[h], sorted(halves[h])))
            key = (1 - h, choice.threshold)
            if key not in decoded:  # a user's stream is decoded alone: shared by rules
                decoded[key] = predict(halves[1 - h], s.model_copy(
                    update={"link_threshold": choice.threshold}), model)
            pred.update(decoded[key])
        out[name] = (pred, choices)
    return out


def fit(x: np.ndarray, y: np.ndarray, kind: str, w: np.ndarray | None = None
        ) -> dict[str, Any]:
    """Fit the scorer and export it as the arrays `PairModel` evaluates."""
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        sc = StandardScaler().fit(x)
        sc.scale_[sc.scale_ == 0] = 1.0
        lr = LogisticRegression(C=1.0, max_iter=5000).fit(sc.transform(x), y, sample_weight=w)
        return {"kind": "logistic", "features": list(FEATURES),
                "scaler": {"mean": sc.mean_.tolist(), "scale": sc.scale_.tolist()},
                "intercept": float(lr.intercept_[0]), "coef": lr.coef_[0].tolist()}
    from sklearn.ensemble import HistGradientBoostingClassifier

    gb = HistGradientBoostingClassifier(max_iter=GBM["trees"], learning_rate=GBM["rate"],
                                        max_depth=GBM["depth"], max_leaf_nodes=GBM["leaves"],
                                        min_samples_leaf=GBM["min_leaf"],
                                        l2_regularization=GBM["l2"],
                                        max_features=GBM["max_features"],
                                        monotonic_cst=[MONOTONE.get(f, 0) for f in FEATURES],
                                        random_state=0).fit(x, y, sample_weight=w)
    return export_gbm(gb, x)


def export_gbm(gb: Any, x: np.ndarray) -> dict[str, Any]:
    """Trees as padded arrays; a leaf points to itself so a fixed-depth walk ends on it."""
    trees = [it[0].nodes for it in gb._predictors]
    width = max(len(t) for t in trees)
    feat = np.zeros((len(trees), width), dtype=np.int64)
    thr = np.zeros((len(trees), width))
    value = np.zeros((len(trees), width))
    left = np.zeros((len(trees), width), dtype=np.int64)
    right = np.zeros((len(trees), width), dtype=np.int64)
    for k, t in enumerate(trees):
        m = len(t)
        leaf = t["is_leaf"].astype(bool)
        own = np.arange(m)
        left[k, :m] = np.where(leaf, own, t["left"])
        right[k, :m] = np.where(leaf, own, t["right"])
        feat[k, :m] = np.where(leaf, 0, t["feature_idx"])
        thr[k, :m] = np.where(leaf, 0.0, t["num_threshold"])
        value[k, :m] = np.where(leaf, t["value"], 0.0)
    spec = {"kind": "gbm", "features": list(FEATURES),
            "scaler": {"mean": [0.0] * len(FEATURES), "scale": [1.0] * len(FEATURES)},
            "intercept": float(np.ravel(gb._baseline_prediction)[0]),
            "trees": {"learning_rate": 1.0, "depth": int(max(t["depth"].max() for t in trees)),
                      "feature": feat.tolist(), "threshold": thr.tolist(),
                      "left": left.tolist(), "right": right.tolist(), "value": value.tolist()}}
    check = PairModel(spec).proba(x[:2000])
    assert np.allclose(check, gb.predict_proba(x[:2000])[:, 1], atol=1e-6), "export mismatch"
    return spec


def train(users: dict[str, list[Turn]], s: CorrelationSettings, kind: str,
          passes: int, decision: bool) -> dict[str, Any]:
    """Gold-threaded histories, then (passes=2) also histories threaded by the first model;
    then (decision) the continue-or-new model."""
    prs = rows_for(users, s, None)
    x, y = _stack(prs)
    spec = fit(x, y, kind, _row_weights(prs))
    if passes > 1:
        prs2 = rows_for(users, s, PairModel(spec))
        x2, y2 = _stack(prs2)
        x, y = np.vstack([x, x2]), np.concatenate([y, y2])
        w = _row_weights([*prs, *prs2])
        spec = fit(x, y, kind, w)
    if decision:
        spec["decision"] = fit_decision(prs, kind)
    spec["training_rows"], spec["training_positives"] = len(y), int(y.sum())
    return spec


# ---- cross-validation --------------------------------------------------------------------

def _summary(res: dict[str, Any]) -> dict[str, Any]:
    keys = (*HEADLINE, "pair_P", "pair_R", "newthread_P", "newthread_R", "prompts",
            "cross_user_links")
    return {k: res[k] for k in keys}


@dataclass(frozen=True)
class Job:
    """One fold: train without the turns labelled `fold`, decode, predict them."""

    name: str  # "loso" or "user_cv"
    fold: str
    label: dict[int, str]
    thresholds: tuple[float, ...]
    calibrate: bool = False  # also decode with thresholds calibrated per half of its users


_PRED: dict[str, dict[float | str, dict[int, dict[str, Any]]]] = {}  # pooled decisions, per run
_STATE: dict[str, Any] = {}  # set once in the parent; forked workers read it


HalfChoice = tuple[Choice, Tally, list[str]]  # a half's choice, its tally, its users
Calibrated = dict[str, tuple[dict[int, dict[str, Any]], list[HalfChoice]]] | None


def run_job(job: Job) -> tuple[Job, dict[float, dict[int, dict[str, Any]]], float, float,
                               Calibrated]:
    """Predictions per threshold for the fold's turns, the opener AUC on them, seconds; and
    with `calibrate`, the decisions at per-half calibrated thresholds and their choices."""
    t0 = time.perf_counter()
    users, openers, s = _STATE["users"], _STATE["openers"], _STATE["settings"]
    closers = _STATE["closers"]
    probs = openers.crossfit(job.label, job.fold)
    test = {i for i, g in job.label.items() if g == job.fold}
    auc = round(openers.auc(probs, test), 4)
    scored = with_openers(users, probs, closers.crossfit(job.label, job.fold))
    train_users = {u: [t for t in ts if job.label[t.index] != job.fold] for u, ts in scored.items()}
    test_users = {u: ts for u, ts in scored.items() if any(t.index in test for t in ts)}
    train_users = {u: ts for u, ts in train_users.items() if ts}
    train_users.update({**pause_users(train_users, _STATE.get("pause_openers", 0)),
                        **resume_users(train_users, _STATE.get("pause_resumes", 0))})
    spec = train(train_users, s, _STATE["kind"], _STATE["passes"], _STATE["decision"])
    labels = np.array([job.label[i] for i in sorted(closers.pos, key=closers.pos.__getitem__)])
    spec["closer"] = closers.export(labels != job.fold)
    model = PairModel(spec)
    out = {}
    for thr in job.thresholds:
        pred = predict(test_users, s.model_copy(update={"link_threshold": thr}), model)
        out[thr] = {i: p for i, p in pred.items() if i in test}
    cal = None
    if job.calibrate:
        cal = {name: ({i: p for i, p in pred.items() if i in test}, choices)
               for name, (pred, choices) in calibrated(test_users, s, model, test,
                                                       _STATE["rules"]).items()}
    return job, out, auc, time.perf_counter() - t0, cal


def run_jobs(gold: list[dict[str, Any]], jobs: Sequence[Job], workers: int) -> dict[str, Any]:
    """Every job in `workers` forked processes; per evaluation, per threshold, the figures of
    every fold and of all its folds pooled."""
    import multiprocessing

    res: dict[str, Any] = {}
    pooled: dict[str, dict[float | str, dict[int, dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(dict))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for k, (job, out, auc, secs, cal) in enumerate(pool.imap_unordered(run_job, jobs)):
            r = res.setdefault(job.name, {"opener_auc": {}, "by_threshold": {}})
            r["opener_auc"][job.fold] = auc
            test = {i for i, g in job.label.items() if g == job.fold}
            for rule, (decided, chosen) in (cal or {}).items():
                key = "calibrated" if rule == "shipped" else f"calibrated:{rule}"
                c = r.setdefault(key, {"folds": {}, "choices": {}})
                pooled[job.name][key].update(decided)
                c["folds"][job.fold] = _summary(score(gold, decided, test))
                c["choices"][job.fold] = [
                    {"threshold": ch.threshold, "source": ch.source, "decisions": ch.decisions,
                     "gain": ch.gain, "reason": ch.reason, "users": sorted(users),
                     "attach": list(t.attach), "new": list(t.new)} for ch, t, users in chosen]
            for thr, pred in out.items():
                pooled[job.name][thr].update(pred)
                r["by_threshold"].setdefault(str(thr), {"folds": {}})["folds"][job.fold] = (
                    _summary(score(gold, pred, test)))
            best = max(out, key=lambda t: sum(
                r["by_threshold"][str(t)]["folds"][job.fold][h] for h in HEADLINE))
            f = r["by_threshold"][str(best)]["folds"][job.fold]
            print(f"  {k + 1}/{len(jobs)} {job.name} {job.fold}: opener AUC {auc}, at {best}: "
                  + " / ".join(f"{f[h]:.3f}" for h in HEADLINE) + f" ({secs:.0f} s)",
                  file=sys.stderr)
    for name, r in res.items():
        label = next(j.label for j in jobs if j.name == name)
        folds = {j.fold for j in jobs if j.name == name}
        everything = {i for i, g in label.items() if g in folds}
        for key, pred in pooled[name].items():
            at = r[key] if str(key).startswith("calibrated") else r["by_threshold"][str(key)]
            at["pooled"] = _summary(score(gold, pred, everything))
            at["folds"] = dict(sorted(at["folds"].items()))
    _PRED.update(pooled)
    return res


def choose_threshold(res: dict[str, Any]) -> float:
    """The threshold with the best mean of the three pooled held-out figures.

    The pooled row is scored as a deployment is: one stream per user mixing every source,
    false links across sources counted (the folds' own figures cannot see those). The mean
    over the folds breaks a tie.
    """
    def key(t: str) -> tuple[float, float]:
        at = res["by_threshold"][t]
        folds = at["folds"].values()
        fold_mean = sum(f[h] for f in folds for h in HEADLINE) / (3 * len(folds))
        return round(sum(at["pooled"][h] for h in HEADLINE) / 3, 4), fold_mean
    return float(max(res["by_threshold"], key=key))


def fold_mean(at: dict[str, Any]) -> float:
    """The mean of the folds' three headline figures."""
    folds = at["folds"].values()
    return sum(f[h] for f in folds for h in HEADLINE) / (3 * len(folds))


def table(res: dict[str, Any], thr: float | str, title: str) -> str:
    """A markdown table of every fold at one threshold (or a "calibrated..." key)."""
    at = res[thr] if isinstance(thr, str) else res["by_threshold"][str(thr)]
    shown = "calibrated per half" if isinstance(thr, str) else thr
    lines = [f"{title} (threshold {shown})", "",
             "| fold | prompts | pairwise F1 | new-thread F1 | parent acc. | opener AUC |",
             "|---|---|---|---|---|---|"]
    for fold, f in at["folds"].items():
        lines.append(f"| {fold} | {f['prompts']:,} | {f['pair_F1']:.3f} | "
                     f"{f['newthread_F1']:.3f} | {f['parent_acc']:.3f} | "
                     f"{res['opener_auc'][fold]:.3f} |")
    p = at["pooled"]
    lines.append(f"| **pooled** | {p['prompts']:,} | **{p['pair_F1']:.3f}** | "
                 f"**{p['newthread_F1']:.3f}** | **{p['parent_acc']:.3f}** | |")
    return "\n".join(lines)


def user_folds(users: dict[str, list[Turn]], k: int) -> dict[int, str]:
    """Every turn's user fold (users dealt round-robin in sorted order)."""
    return {t.index: f"users-{n % k + 1}" for n, u in enumerate(sorted(users))
            for t in users[u]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("gbm", "logistic"), default="gbm")
    ap.add_argument("--passes", type=int, choices=(1, 2), default=2)
    ap.add_argument("--no-decision", action="store_true",
                    help="decide continue-or-new by the summed pair probabilities alone")
    ap.add_argument("--thresholds", default="0.35,0.45,0.55,0.65")
    ap.add_argument("--no-loso", action="store_true")
    ap.add_argument("--no-user-cv", action="store_true")
    ap.add_argument("--only-source", action="append", default=[],
                    help="run the LOSO folds of these sources only (quick checks)")
    ap.add_argument("--jobs", type=int, default=2, help="folds trained in parallel")
    ap.add_argument("--out", type=Path, default=REPO / "policies" / "linker-weights.json")
    ap.add_argument("--dump-predictions", type=Path, default=None,
                    help="write the LOSO decisions at the chosen threshold here, one JSON line "
                         "per prompt (indices, thread, parent, position; no text), and those "
                         "at each threshold to FILE.<threshold>")
    ap.add_argument("--source-power", type=float, default=0.0,
                    help="weigh each training prompt by (mean prompts per source / its "
                         "source's prompts) ** this (1: every source weighs the same)")
    ap.add_argument("--gbm", default="",
                    help="boosted-tree settings to override, e.g. min_leaf=200,leaves=16")
    ap.add_argument("--no-write", action="store_true", help="do not write the weights file")
    ap.add_argument("--monotone", default="",
                    help="pair-model features whose effect may only fall (-1) or rise (1), "
                         "e.g. gap=-1,thread_gap=-1")
    ap.add_argument("--pause-openers", type=int, default=0, metavar="N",
                    help="add N synthetic training users built from the training turns: a "
                         "conversation's first turn alone, then 1-24 h later an unrelated "
                         "opener of another user, gold new (bench/pause_openers.py)")
    ap.add_argument("--pause-resumes", type=int, default=0, metavar="N",
                    help="add N synthetic training users: a conversation's first turn, then "
                         "its real second turn 1-24 h later, linked (bench/pause_openers.py)")
    ap.add_argument("--calibrate", action="store_true",
                    help="also score each held-out source with link_threshold calibrated on "
                         "half its users' history-linked traffic and applied to the other half "
                         "(appliance/link/calibrate.py, the policy's min_decisions)")
    ap.add_argument("--calibrate-rule", action="append", default=[], metavar="NAME=SPEC",
                    help="with --calibrate, also score this calibration rule (bench/"
                         "calibration.py: e.g. old, or min_side=10,prior=30,hi=0.85)")
    a = ap.parse_args()
    try:
        import sklearn  # noqa: F401  (dev-only: the service walks the trees with numpy)
    except ImportError:
        print("train_linker.py needs scikit-learn, the `dev` extra: "
              ".venv/bin/pip install -e '.[dev]'", file=sys.stderr)
        return 2
    thresholds = [float(t) for t in a.thresholds.split(",")]
    for item in filter(None, a.gbm.split(",")):
        key, value = item.split("=")
        if key not in GBM:
            ap.error(f"--gbm: no setting {key!r} (settings: {', '.join(GBM)})")
        GBM[key] = type(GBM[key])(float(value))
    for item in filter(None, a.monotone.split(",")):
        key, _, value = item.partition("=")
        if key not in FEATURES or value not in ("-1", "1"):
            ap.error(f"--monotone: {item!r} is not FEATURE=-1 or FEATURE=1")
        MONOTONE[key] = int(value)
    s = load_policies().correlation
    streams = sorted(BENCH.glob("threads-*.jsonl"))
    gold, users = load_streams(streams)
    openers = Openers(users)
    closers = Openers(users, closer=True, x=openers.x)
    by_source = {g["index"]: g["source"] for g in gold}
    result: dict[str, Any] = {"streams": [p.name for p in streams]}
    cal = s.calibration
    shipped = Rule(min_side=cal.min_each_side, shrink=cal.shrink_continuations,
                   shrink_new=cal.shrink_new)
    rules = {"shipped": shipped}
    for item in a.calibrate_rule:
        name, _, spec = item.partition("=")
        rules[name] = parse_rule(spec, shipped)
    _STATE.update(rules=rules, users=users, openers=openers, closers=closers, settings=s,
                  kind=a.kind, passes=a.passes, decision=not a.no_decision,
                  source_power=a.source_power, pause_openers=a.pause_openers,
                  pause_resumes=a.pause_resumes)
    jobs = []
    if not a.no_loso:
        jobs += [Job("loso", f, by_source, tuple(thresholds), a.calibrate)
                 for f in a.only_source or sorted(set(by_source.values()))]
    if not a.no_user_cv:
        label = user_folds(users, 5)
        jobs += [Job("user_cv", f, label, tuple(thresholds)) for f in sorted(set(label.values()))]
    result.update(run_jobs(gold, jobs, a.jobs) if jobs else {})
    thr = choose_threshold(result["loso"]) if "loso" in result else s.link_threshold
    result["chosen_threshold"] = thr
    if a.dump_predictions is not None and "loso" in result:
        _PRED["loso"][thr] = dict(sorted(_PRED["loso"][thr].items()))
        a.dump_predictions.write_text("".join(
            json.dumps(p) + "\n" for p in _PRED["loso"][thr].values()))
        keys: list[float | str] = [*thresholds, *(["calibrated"] if a.calibrate else [])]
        for t in keys:  # FILE.<threshold>
            a.dump_predictions.with_name(f"{a.dump_predictions.name}.{t}").write_text("".join(
                json.dumps(p) + "\n" for _, p in sorted(_PRED["loso"][t].items())))
    print(json.dumps(result, indent=1))
    if "loso" in result:
        print(table(result["loso"], thr, "Leave-one-source-out"))
        for key in sorted(k for k in result["loso"] if k.startswith("calibrated")):
            print(table(result["loso"], key, f"Leave-one-source-out, {key}"))
            print(f"mean of the folds' three figures: {fold_mean(result['loso'][key]):.4f}")
            for fold, chs in sorted(result["loso"][key]["choices"].items()):
                print(f"  {fold}: " + "; ".join(
                    f"{c['threshold']} ({c['source']}, {c['decisions']} decisions, "
                    f"{round(sum(c['attach']))} / {round(sum(c['new']))}, +{c['gain']})"
                    for c in chs))
    if "user_cv" in result:
        print(table(result["user_cv"], thr, "Grouped 5-fold CV by user"))
    if a.only_source or a.no_write:
        return 0
    final = with_openers(users, openers.crossfit(by_source, None),
                         closers.crossfit(by_source, None))
    final.update({**pause_users(final, a.pause_openers),
                  **resume_users(final, a.pause_resumes)})
    spec = train(final, s, a.kind, a.passes, not a.no_decision)
    from appliance.embed import load_manifest

    spec.update({
        "opener": openers.export(), "closer": closers.export(),
        "format": "semtrace-linker/2", "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        "threshold": thr, "embedding_model": load_manifest().model_id,
        "training": {"streams": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                                 for p in streams},
                     "users": len(users), "prompts": len(gold), "passes": a.passes,
                     "decision_model": not a.no_decision, "trees": dict(GBM),
                     "monotone": dict(MONOTONE), "pause_openers": a.pause_openers,
                     "pause_resumes": a.pause_resumes},
        "evaluation": result})
    a.out.write_text(json.dumps(spec, separators=(",", ":")) + "\n")
    print(f"wrote {a.out} (set link_threshold = {thr} in policies/correlation.toml)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
