"""Train the pairwise linker offline (scikit-learn, dev-only); write policies/linker-weights.json.

usage: .venv/bin/python bench/train_linker.py [--gold THREADS.jsonl] [--kind gbm|logistic]
       [--folds 5] [--no-cv] [--out policies/linker-weights.json]

Features come from the pipeline's own code: every prompt of the stream goes
through `Redactor.redact`, `entity_keys` and `LlamaEmbedder.embed` (cached under
/tmp, keyed by the stream, appliance/redact/, the redaction policy and the model), and
the feature rows are built by `appliance.link.features` over `Candidate`
histories shaped as the pipeline shapes them (same user only, within the
horizon, oldest first). Only the input fields (user, session, ts, text) feed the
features; the gold thread and parent give the labels.

Training rows come from two passes: histories threaded as in the gold stream,
then histories threaded by the first model's own decisions (so the model also
learns from the situations its mistakes create at run time). Cross-validation
is grouped by user: no user is in both the train and the test folds.
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.config import CorrelationSettings, load_policies  # noqa: E402
from appliance.evaluate import score_all  # noqa: E402
from appliance.link import FEATURES, PairModel, VectorCache, decide, features  # noqa: E402
from appliance.records import Candidate  # noqa: E402

DEFAULT_GOLD = REPO.parent / "shared" / "bench" / "threads-dev.jsonl"
CACHE_DIR = Path(tempfile.gettempdir()) / "semtrace-linker-cache"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


@dataclass(frozen=True)
class Turn:
    """One prompt as the linker sees it, plus its gold answer (labels only)."""

    index: int
    user: str
    ts: datetime
    vector: np.ndarray
    text: str  # redacted
    session_key: str | None
    entity_keys: tuple[str, ...]
    gold_thread: str
    gold_parent: int | None


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
        print(f"  prepared {len(out)}/{len(raw)} ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr)
    path.write_text(json.dumps(out))
    return out


def load_turns(gold: Path) -> tuple[list[dict[str, Any]], dict[str, list[Turn]]]:
    """The gold rows and each user's turns in stream order."""
    gold_rows = [json.loads(line) for line in gold.read_text().splitlines() if line.strip()]
    by_index = {g["index"]: g for g in gold_rows}
    users: dict[str, list[Turn]] = defaultdict(list)
    for r in prepare(gold):
        g = by_index[r["index"]]
        users[r["user"]].append(Turn(
            index=r["index"], user=r["user"],
            ts=datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).astimezone(UTC),
            vector=np.asarray(r["vector"], dtype=np.float32), text=r["text"],
            session_key=r["session_key"], entity_keys=tuple(r["entity_keys"]),
            gold_thread=g["gold_thread_id"], gold_parent=g["gold_parent_index"]))
    return gold_rows, users


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


def _query(t: Turn) -> Any:
    from appliance.link import LinkInput

    return LinkInput(ts=t.ts, vector=t.vector, text=t.text, session_key=t.session_key,
                     entity_keys=t.entity_keys)


def rows_for(users: dict[str, list[Turn]], names: Sequence[str], s: CorrelationSettings,
             model: PairModel | None) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Feature rows and labels; histories threaded by gold (model None) or by the model."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    stats = {"prompts": 0, "followups": 0, "parent_in_shortlist": 0}
    cache = VectorCache()
    for name in names:
        def visit(t: Turn, cands: list[Candidate]) -> tuple[str | None, int | None]:
            stats["prompts"] += 1
            stats["followups"] += t.gold_parent is not None
            if cands:
                pick, x, _, _ = features(_query(t), cands, s, cache)
                y = np.array([cands[i].record_id == t.gold_parent for i in pick], dtype=np.int8)
                stats["parent_in_shortlist"] += int(y.sum())
                xs.append(x)
                ys.append(y)
            if model is not None:
                link = decide(_query(t), cands, model, s, cache) if cands else None
                return (link.thread_id, link.parent_id) if link else (None, None)
            return t.gold_thread, t.gold_parent
        walk(users[name], s, visit)
    return np.vstack(xs), np.concatenate(ys), stats


def predict(users: dict[str, list[Turn]], names: Sequence[str], s: CorrelationSettings,
            model: PairModel) -> dict[int, dict[str, Any]]:
    """Decode users' streams with the run-time linker; predictions in the scorer's format."""
    pred: dict[int, dict[str, Any]] = {}
    cache = VectorCache()
    for name in names:
        def visit(t: Turn, cands: list[Candidate]) -> tuple[str | None, int | None]:
            link = decide(_query(t), cands, model, s, cache)
            thread = link.thread_id or f"p{t.index}"
            pred[t.index] = {"index": t.index, "thread_id": thread,
                             "parent_index": link.parent_id, "position": link.position}
            return thread, link.parent_id
        walk(users[name], s, visit)
    return pred


def fit(x: np.ndarray, y: np.ndarray, kind: str) -> dict[str, Any]:
    """Fit the scorer and export it as the arrays `PairModel` evaluates."""
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        sc = StandardScaler().fit(x)
        sc.scale_[sc.scale_ == 0] = 1.0
        lr = LogisticRegression(C=1.0, max_iter=5000).fit(sc.transform(x), y)
        return {"kind": "logistic", "features": list(FEATURES),
                "scaler": {"mean": sc.mean_.tolist(), "scale": sc.scale_.tolist()},
                "intercept": float(lr.intercept_[0]), "coef": lr.coef_[0].tolist()}
    from sklearn.ensemble import HistGradientBoostingClassifier

    gb = HistGradientBoostingClassifier(max_iter=GBM["trees"], learning_rate=GBM["rate"],
                                        max_depth=GBM["depth"], max_leaf_nodes=15,
                                        min_samples_leaf=20, l2_regularization=1.0,
                                        random_state=0).fit(x, y)
    return export_gbm(gb, x)


GBM = {"trees": 150, "rate": 0.1, "depth": 4}


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


def train(users: dict[str, list[Turn]], names: Sequence[str], s: CorrelationSettings,
          kind: str, passes: int = 2) -> tuple[dict[str, Any], dict[str, int]]:
    """Gold-threaded histories, then (passes=2) also histories threaded by the first model."""
    x, y, stats = rows_for(users, names, s, None)
    spec = fit(x, y, kind)
    if passes > 1:
        x2, y2, _ = rows_for(users, names, s, PairModel(spec))
        x, y = np.vstack([x, x2]), np.concatenate([y, y2])
        spec = fit(x, y, kind)
    stats.update(rows=len(y), positives=int(y.sum()))
    return spec, stats


KEYS = ("pair_F1", "pair_P", "pair_R", "newthread_F1", "parent_acc", "parent_acc_on_followups",
        "ARI_mean_per_user", "cross_user_links")


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """The headline metrics, overall and per source."""
    out = {k: res[k] for k in KEYS}
    out["by_source"] = {src: {k: v[k] for k in ("pair_F1", "newthread_F1", "parent_acc")}
                        for src, v in res.get("by_source", {}).items()}
    return out


def cross_validate(gold: list[dict[str, Any]], users: dict[str, list[Turn]],
                   s: CorrelationSettings, kind: str, folds: int, passes: int) -> dict[str, Any]:
    """Grouped K-fold by user; every threshold of THRESHOLDS scored on the pooled folds."""
    from sklearn.model_selection import GroupKFold

    names = sorted(users)
    preds: dict[float, dict[int, dict[str, Any]]] = {t: {} for t in THRESHOLDS}
    for k, (tr, te) in enumerate(GroupKFold(n_splits=folds).split(names, groups=names)):
        spec, _ = train(users, [names[i] for i in tr], s, kind, passes)
        for thr in THRESHOLDS:
            st = s.model_copy(update={"link_threshold": thr})
            preds[thr].update(predict(users, [names[i] for i in te], st, PairModel(spec)))
        print(f"  fold {k + 1}/{folds} done", file=sys.stderr)
    return {str(t): summary(score_all(gold, preds[t], by_source=True)) for t in THRESHOLDS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gold", type=Path, default=DEFAULT_GOLD)
    ap.add_argument("--kind", choices=("gbm", "logistic"), default="gbm")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--passes", type=int, choices=(1, 2), default=2)
    ap.add_argument("--no-cv", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "policies" / "linker-weights.json")
    a = ap.parse_args()
    s = load_policies().correlation
    gold, users = load_turns(a.gold)
    cv = None if a.no_cv else cross_validate(gold, users, s, a.kind, a.folds,
                                                     a.passes)
    spec, stats = train(users, sorted(users), s, a.kind, a.passes)
    fitted = {str(t): summary(score_all(gold, predict(
        users, sorted(users), s.model_copy(update={"link_threshold": t}), PairModel(spec)),
        by_source=True)) for t in THRESHOLDS}
    result = {"grouped_cv": cv, "fit_on_all": fitted}
    print(json.dumps(result, indent=1))
    from appliance.embed import load_manifest

    spec.update({
        "format": "semtrace-linker/1", "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        "threshold": s.link_threshold, "embedding_model": load_manifest().model_id,
        "training": {"stream": a.gold.name,
                     "stream_sha256": hashlib.sha256(a.gold.read_bytes()).hexdigest(),
                     "users": len(users), **stats,
                     "passes": a.passes},
        "evaluation": result})
    a.out.write_text(json.dumps(spec, separators=(",", ":")) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
