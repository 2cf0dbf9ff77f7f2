"""The run registry: what a training run leaves on disk, and which run serves.

Layout of one run (``artifact_dir/run_YYYYMMDD_HHMMSS[_tag]/``)::

    params.json           {model name: hyperparameters, "dataset": {...}}
    versions.json         package versions, "snapshot_offsets"
    metrics.json          {"primary": "ndcg@10", "score": the policy's validation value, "best_model": name,
                           "validation": {model name | "policy": {metric: value}}, "split": how validation was cut}
    policy.json           the served policy (``ranking.policy.Policy``): models and weights, λ, cap, fill
    item_ids.json         item ids, in the index order every array below uses
    user_ids.json         user ids, likewise
    popularity.npy        float32 popularity per item
    models/{name}/        Recommender.save(...)
    embeddings/{name}.npy L2-normalised item embeddings (n_items × d) for models that have them
    faiss/{name}.index    FAISS inner-product index over those embeddings
    pairs.parquet, basket_segments.npz, basket_cover.npz   basket artefacts, when the events carry basket ids
    basket_policy.json, basket_index.npz   the basket policy tuned on the run's baskets, and those baskets
    COMPLETE              written last; a run without it is not a run

``artifact_dir/run_current`` is a symlink to the serving run; ``artifact_dir/promotions.json``
(``trainer.promotion``) keeps the stack of promoted runs that ``rollback`` walks back.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ranking.policy import POLICY_FILE, InvalidPolicy, Policy
from schemas.errors import ArtifactError
from trainer.base import Recommender, normalize_rows

CURRENT = "run_current"
RUN_RE = re.compile(r"^run_\d{8}_\d{6}(_[A-Za-z0-9_.-]+)?$")
REQUIRED = ("params.json", "versions.json", "metrics.json", "item_ids.json", "popularity.npy", "models", "COMPLETE")


def new_run_dir(artifact_dir: Path, tag: str | None = None) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
    name = f"run_{stamp}" + (f"_{tag}" if tag else "")
    path = Path(artifact_dir) / name
    n = 1
    while path.exists():  # two runs in one second
        n += 1
        path = Path(artifact_dir) / f"{name}_{n}"
    return path


def build_faiss_index(embeddings: np.ndarray):
    import faiss

    emb = np.ascontiguousarray(normalize_rows(embeddings), dtype=np.float32)
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    return index


def save_run(
    run_dir: Path,
    models: dict[str, Recommender],
    metrics: dict[str, Any],
    dataset_info: dict[str, Any] | None = None,
    versions: dict[str, Any] | None = None,
    extras: Callable[[Path], None] | None = None,
    policy: Policy | None = None,
) -> Path:
    """Write every model of a run and its shared arrays, then ``extras(run_dir)`` (more
    artefacts, e.g. the basket pairs); ``COMPLETE`` last."""
    import faiss

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    first = next(iter(models.values()))
    data = first._require()
    (run_dir / "item_ids.json").write_text(json.dumps([str(i) for i in data.item_ids]))
    (run_dir / "user_ids.json").write_text(json.dumps([str(u) for u in data.user_ids]))
    pop = np.asarray(data.matrix.sum(axis=0)).ravel().astype(np.float32)
    np.save(run_dir / "popularity.npy", pop)
    params: dict[str, Any] = {"dataset": dataset_info or {}}
    for name, model in models.items():
        model.save(run_dir / "models" / name)
        params[name] = model.get_params()
        emb = model.item_embeddings()
        if emb is not None:
            (run_dir / "embeddings").mkdir(exist_ok=True)
            (run_dir / "faiss").mkdir(exist_ok=True)
            np.save(run_dir / "embeddings" / f"{name}.npy", normalize_rows(emb))
            faiss.write_index(build_faiss_index(emb), str(run_dir / "faiss" / f"{name}.index"))
    (run_dir / "params.json").write_text(json.dumps(params, indent=2, default=str))
    (run_dir / "versions.json").write_text(json.dumps(versions or package_versions(), indent=2, default=str))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    policy = policy or Policy.single(str(metrics.get("best_model") or next(iter(models))))
    (run_dir / POLICY_FILE).write_text(json.dumps(policy.to_dict(), indent=2, default=float))
    if extras is not None:
        extras(run_dir)
    (run_dir / "COMPLETE").write_text(datetime.now(timezone.utc).isoformat())
    return run_dir


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("streamrec", "numpy", "scipy", "pandas", "torch", "lightfm-next", "faiss-cpu", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def verify_run(run_dir: Path) -> list[str]:
    """Problems that make a run unusable; empty when it is complete."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return [f"{run_dir} is not a directory"]
    problems = [f"missing {name}" for name in REQUIRED if not (run_dir / name).exists()]
    if (run_dir / "models").is_dir():
        n_items = len(json.loads((run_dir / "item_ids.json").read_text())) if (run_dir / "item_ids.json").exists() else None
        for mdir in sorted((run_dir / "models").iterdir()):
            for f in ("params.json", "model.pkl"):
                if not (mdir / f).exists():
                    problems.append(f"model {mdir.name}: missing {f}")
            emb = run_dir / "embeddings" / f"{mdir.name}.npy"
            if emb.exists():
                arr = np.load(emb, mmap_mode="r")
                if n_items is not None and arr.shape[0] != n_items:
                    problems.append(f"embeddings/{mdir.name}.npy has {arr.shape[0]} rows for {n_items} items")
                if not (run_dir / "faiss" / f"{mdir.name}.index").exists():
                    problems.append(f"missing faiss/{mdir.name}.index")
    return problems


@dataclass
class Run:
    """A loaded run, as the server and the offline commands use it."""

    path: Path
    models: dict[str, Recommender]
    item_ids: list[str]
    popularity: np.ndarray
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    indexes: dict[str, Any] = field(default_factory=dict)  # name -> faiss index
    metrics: dict[str, Any] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy.popularity)

    @property
    def run_id(self) -> str:
        return self.path.name


def load_policy(run_dir: Path) -> Policy:
    """The run's policy; a run written before policies existed serves its best model."""
    run_dir = Path(run_dir)
    path = run_dir / POLICY_FILE
    if not path.exists():
        try:
            best = json.loads((run_dir / "metrics.json").read_text()).get("best_model")
        except (OSError, ValueError):
            best = None
        return Policy.single(best) if best else Policy.popularity()
    try:
        return Policy.from_dict(json.loads(path.read_text()))
    except (ValueError, InvalidPolicy) as exc:
        raise ArtifactError(f"{run_dir.name}/{POLICY_FILE}: {exc}") from exc


def load_run(run_dir: Path, models: list[str] | None = None) -> Run:
    """Load a complete run (every model, or only ``models``)."""
    import faiss

    from trainer.models import MODELS

    run_dir = Path(run_dir).resolve()
    problems = verify_run(run_dir)
    if problems:
        raise ArtifactError(f"{run_dir.name} is not a complete run: {'; '.join(problems)}")
    loaded: dict[str, Recommender] = {}
    embeddings: dict[str, np.ndarray] = {}
    indexes: dict[str, Any] = {}
    for mdir in sorted((run_dir / "models").iterdir()):
        name = mdir.name
        if models is not None and name not in models:
            continue
        kind = json.loads((mdir / "params.json").read_text()).get("model", name)
        if kind not in MODELS:
            raise ArtifactError(f"{run_dir.name}: unknown model kind {kind!r}")
        loaded[name] = MODELS[kind].load(mdir)
        emb = run_dir / "embeddings" / f"{name}.npy"
        if emb.exists():
            embeddings[name] = np.load(emb)
            indexes[name] = faiss.read_index(str(run_dir / "faiss" / f"{name}.index"))
    return Run(
        path=run_dir,
        models=loaded,
        item_ids=json.loads((run_dir / "item_ids.json").read_text()),
        popularity=np.load(run_dir / "popularity.npy"),
        embeddings=embeddings,
        indexes=indexes,
        metrics=json.loads((run_dir / "metrics.json").read_text()),
        policy=load_policy(run_dir).restricted_to(list(loaded)) if models is None else load_policy(run_dir),
    )


def list_runs(artifact_dir: Path) -> list[Path]:
    """Runs under ``artifact_dir``, oldest first (by the time in the name, then by when
    they were written: two runs of one second differ only by tag)."""
    d = Path(artifact_dir)
    if not d.is_dir():
        return []
    runs = [p for p in d.iterdir() if p.is_dir() and not p.is_symlink() and RUN_RE.match(p.name)]

    def when(p: Path) -> tuple[str, float]:
        done = p / "COMPLETE"
        return p.name[4:19], (done if done.exists() else p).stat().st_mtime

    return sorted(runs, key=when)


def current_run(artifact_dir: Path) -> Path | None:
    link = Path(artifact_dir) / CURRENT
    if not link.is_symlink() and not link.exists():
        return None
    target = link.resolve()
    return target if target.is_dir() else None


def set_current(artifact_dir: Path, run_dir: Path) -> None:
    """Point ``run_current`` at ``run_dir`` atomically (rename over the old link)."""
    artifact_dir = Path(artifact_dir)
    tmp = artifact_dir / f".{CURRENT}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(Path(run_dir).name, tmp)
    os.replace(tmp, artifact_dir / CURRENT)


def resolve_run(artifact_dir: Path, ref: str | Path) -> Path:
    """A run from a path, a run name under ``artifact_dir``, or ``current``.

    Raises ``ArtifactError`` when there is no such run."""
    if str(ref) in ("current", CURRENT):
        cur = current_run(artifact_dir)
        if cur is None:
            raise ArtifactError(f"no serving run: {Path(artifact_dir) / CURRENT} does not exist")
        return cur
    path = Path(ref)
    if path.is_dir():
        return path.resolve()
    under = Path(artifact_dir) / str(ref)
    if under.is_dir():
        return under.resolve()
    raise ArtifactError(f"no run {ref!r} (neither a directory nor a run under {artifact_dir})")


def run_score(metrics: dict[str, Any], metric: str) -> float | None:
    """A run's figure for ``metric``: its served policy's validation value, else (runs made
    before policies) its best model's (None when absent).

    >>> run_score({"validation": {"ease": {"ndcg@10": 0.4}, "policy": {"ndcg@10": 0.38}}}, "ndcg@10")
    0.38
    >>> run_score({"validation": {"ease": {"ndcg@10": 0.4}, "pop": {"ndcg@10": 0.2}}}, "ndcg@10")
    0.4
    >>> run_score({"validation": {"ease": {"p@10": 0.4}}}, "ndcg@10") is None
    True
    """
    validation = metrics.get("validation") or {}
    served = validation.get("policy")
    if isinstance(served, dict) and served.get(metric) is not None:
        return float(served[metric])
    values = [m[metric] for m in validation.values() if isinstance(m, dict) and metric in m]
    values = [float(v) for v in values if v is not None and np.isfinite(v)]
    if values:
        return max(values)
    top = metrics.get(metric)
    return float(top) if isinstance(top, (int, float)) else None


def reindex_run(run_dir: Path) -> list[str]:
    """Rebuild every FAISS index of a run; returns the model names indexed.

    Embeddings come from ``embeddings/{name}.npy``; a model that has embeddings but lost
    its file gets it back from the saved model first."""
    import faiss

    from trainer.models import MODELS

    run_dir = Path(run_dir)
    done = []
    emb_dir = run_dir / "embeddings"
    for mdir in sorted((run_dir / "models").iterdir()) if (run_dir / "models").is_dir() else []:
        if (emb_dir / f"{mdir.name}.npy").exists():
            continue
        kind = json.loads((mdir / "params.json").read_text()).get("model", mdir.name)
        if kind not in MODELS:
            continue
        emb = MODELS[kind].load(mdir).item_embeddings()
        if emb is not None:
            emb_dir.mkdir(exist_ok=True)
            np.save(emb_dir / f"{mdir.name}.npy", normalize_rows(emb))
    if not emb_dir.is_dir():
        return done
    (run_dir / "faiss").mkdir(exist_ok=True)
    for emb in sorted(emb_dir.glob("*.npy")):
        tmp = run_dir / "faiss" / f".{emb.stem}.index.tmp"
        faiss.write_index(build_faiss_index(np.load(emb)), str(tmp))
        os.replace(tmp, run_dir / "faiss" / f"{emb.stem}.index")
        done.append(emb.stem)
    return done
