"""NCF / NeuMF (He et al., 2017): a GMF branch and an MLP branch fused in one output layer.

- GMF: element-wise product of a user and an item embedding;
- MLP: the concatenated user and item embeddings through dense + ReLU (+ dropout) layers;
- output: one linear unit over ``[GMF, MLP]``.

Trained on the implicit matrix with ``negatives`` random unseen items per positive, Adam,
gradient clipping, ReduceLROnPlateau and early stopping on a held-out validation loss that
keeps the best weights. ``loss="bce"`` learns interaction probability; ``loss="mse"``
regresses the implicit strength (or, with ``target="value"``, the rating; RMSE is then
meaningful). Similar items: cosine over the concatenated GMF and MLP item embeddings.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from trainer.base import Recommender
from trainer.data.interactions import Interactions
from trainer.device import pick_device
from trainer.models._training import EarlyStopping, NegativeSampler, epoch_progress, seed_everything, torch_threads

log = logging.getLogger("streamrec.trainer.ncf")


def _build_net(n_users: int, n_items: int, dim: int, layers: tuple[int, ...], dropout: float):
    import torch
    from torch import nn

    class NeuMF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.user_gmf = nn.Embedding(n_users, dim)
            self.item_gmf = nn.Embedding(n_items, dim)
            self.user_mlp = nn.Embedding(n_users, dim)
            self.item_mlp = nn.Embedding(n_items, dim)
            blocks: list[nn.Module] = []
            width = 2 * dim
            for size in layers:
                blocks += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
                width = size
            self.mlp = nn.Sequential(*blocks)
            self.out = nn.Linear(dim + width, 1)
            for emb in (self.user_gmf, self.item_gmf, self.user_mlp, self.item_mlp):
                nn.init.normal_(emb.weight, std=0.01)

        def forward(self, u, i):
            gmf = self.user_gmf(u) * self.item_gmf(i)
            mlp = self.mlp(torch.cat([self.user_mlp(u), self.item_mlp(i)], dim=-1))
            return self.out(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)

    return NeuMF()


class NCF(Recommender):
    name = "ncf"

    def __init__(
        self,
        embedding_dim: int = 64,
        mlp_layers: tuple[int, ...] | list[int] = (128, 64, 32),
        dropout: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        batch_size: int = 256,
        negatives: int = 4,
        epochs: int = 100,
        patience: int | None = 10,
        lr_factor: float = 0.5,
        lr_patience: int = 5,
        grad_clip: float | None = 5.0,
        loss: str = "bce",
        target: str = "strength",
        val_fraction: float = 0.05,
        device: str = "auto",
        threads: int | None = None,
        seed: int = 0,
        verbose: bool = False,
    ):
        if loss not in ("bce", "mse"):
            raise ValueError(f"ncf loss must be 'bce' or 'mse', got {loss!r}")
        if target not in ("strength", "value"):
            raise ValueError(f"ncf target must be 'strength' or 'value', got {target!r}")
        self.embedding_dim = embedding_dim
        self.mlp_layers = list(mlp_layers)
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.negatives = negatives
        self.epochs = epochs
        self.patience = patience
        self.lr_factor = lr_factor
        self.lr_patience = lr_patience
        self.grad_clip = grad_clip
        self.loss = loss
        self.target = target
        self.val_fraction = val_fraction
        self.device = device
        self.threads = threads
        self.seed = seed
        self.verbose = verbose
        self.net_ = None
        self.history_: list[dict[str, float]] = []

    @property
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        return self.loss == "mse"

    @property
    def seconds_per_epoch(self) -> float:
        """Mean wall time of a training epoch in the last ``fit`` (NaN before)."""
        secs = [h["seconds"] for h in self.history_]
        return float(np.mean(secs)) if secs else float("nan")

    # --- training -----------------------------------------------------------------------
    def _positives(self, data: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.target == "value" and "value" in data.events and data.events["value"].notna().any():
            ev = data.events.dropna(subset=["value"])
            g = ev.groupby(["uidx", "iidx"])["value"].mean()
            return (g.index.get_level_values(0).to_numpy(), g.index.get_level_values(1).to_numpy(),
                    g.to_numpy(np.float32))
        m = data.matrix.tocoo()
        keep = m.data > 0
        label = np.ones(keep.sum(), np.float32) if self.loss == "bce" else m.data[keep].astype(np.float32)
        return m.row[keep], m.col[keep], label

    def _with_negatives(self, rng, sampler, u, i, y):
        if self.negatives <= 0:
            return u, i, y
        nu = np.repeat(u, self.negatives)
        ni = sampler.sample(rng, nu)
        return (np.concatenate([u, nu]), np.concatenate([i, ni]),
                np.concatenate([y, np.zeros(len(nu), np.float32)]))

    def _fit(self, data: Interactions) -> None:
        import torch

        with torch_threads(self.threads):
            rng = seed_everything(self.seed)
            dev = pick_device(self.device)
            u, i, y = self._positives(data)
            if len(u) == 0:
                raise ValueError("ncf: no positive interactions to learn from")
            sampler = NegativeSampler(data.seen())
            order = rng.permutation(len(u))
            n_val = int(len(u) * self.val_fraction) if self.val_fraction > 0 and len(u) >= 20 else 0
            val_idx, tr_idx = order[:n_val], order[n_val:]
            tu, ti, ty = u[tr_idx], i[tr_idx], y[tr_idx]
            val = self._with_negatives(rng, sampler, u[val_idx], i[val_idx], y[val_idx]) if n_val else None

            net = _build_net(data.n_users, data.n_items, self.embedding_dim, tuple(self.mlp_layers), self.dropout).to(dev)
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=self.lr_factor,
                                                               patience=self.lr_patience)
            crit = torch.nn.BCEWithLogitsLoss() if self.loss == "bce" else torch.nn.MSELoss()
            stopper = EarlyStopping(self.patience if val is not None else None)
            self.history_ = []
            with epoch_progress("ncf", self.epochs, self.verbose) as advance:
                for epoch in range(self.epochs):
                    t0 = time.perf_counter()
                    eu, ei, ey = self._with_negatives(rng, sampler, tu, ti, ty)
                    train_loss = self._run_epoch(net, opt, crit, dev, rng, eu, ei, ey)
                    seconds = time.perf_counter() - t0
                    val_loss = self._eval_loss(net, crit, dev, *val) if val is not None else train_loss
                    sched.step(val_loss)
                    lr_now = opt.param_groups[0]["lr"]
                    self.history_.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                                          "lr": lr_now, "seconds": seconds})
                    log.info("ncf epoch %d train_loss=%.4f val_loss=%.4f lr=%.2g %.1fs", epoch + 1, train_loss,
                             val_loss, lr_now, seconds)
                    advance(loss=train_loss, val=val_loss)
                    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                    if stopper.step(val_loss, epoch, state):
                        log.info("ncf early stop at epoch %d (best %d)", epoch + 1, stopper.best_epoch + 1)
                        break
            if stopper.best_state is not None:
                net.load_state_dict(stopper.best_state)
            self.best_epoch_ = stopper.best_epoch + 1  # 1-based epoch whose weights were kept
            self.net_ = net.cpu().eval()
            if val is not None:
                self.best_val_loss_ = self._eval_loss(self.net_, crit, torch.device("cpu"), *val)

    def _run_epoch(self, net, opt, crit, dev, rng, u, i, y) -> float:
        import torch

        net.train()
        perm = rng.permutation(len(u))
        tu = torch.as_tensor(u[perm], dtype=torch.long)
        ti = torch.as_tensor(i[perm], dtype=torch.long)
        ty = torch.as_tensor(y[perm], dtype=torch.float32)
        total = 0.0
        for start in range(0, len(perm), self.batch_size):
            bu = tu[start : start + self.batch_size].to(dev)
            bi = ti[start : start + self.batch_size].to(dev)
            by = ty[start : start + self.batch_size].to(dev)
            opt.zero_grad()
            loss = crit(net(bu, bi), by)
            loss.backward()
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), self.grad_clip)
            opt.step()
            total += float(loss.detach()) * len(bu)
        return total / max(len(perm), 1)

    def _eval_loss(self, net, crit, dev, u, i, y) -> float:
        import torch

        net.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(u), 8192):
                bu = torch.as_tensor(u[start : start + 8192], dtype=torch.long, device=dev)
                bi = torch.as_tensor(i[start : start + 8192], dtype=torch.long, device=dev)
                by = torch.as_tensor(y[start : start + 8192], dtype=torch.float32, device=dev)
                total += float(crit(net(bu, bi), by)) * len(bu)
        return total / max(len(u), 1)

    # --- scoring --------------------------------------------------------------------------
    def _score_users(self, uidx: np.ndarray) -> np.ndarray:
        import torch

        n_items = self._require().n_items
        out = np.empty((len(uidx), n_items), dtype=np.float32)
        items = torch.arange(n_items, dtype=torch.long)
        rows_per_chunk = max(1, 200_000 // max(n_items, 1))
        with torch.no_grad():
            for start in range(0, len(uidx), rows_per_chunk):
                chunk = torch.as_tensor(uidx[start : start + rows_per_chunk], dtype=torch.long)
                bu = chunk.repeat_interleave(n_items)
                bi = items.repeat(len(chunk))
                s = self.net_(bu, bi)
                if self.loss == "bce":
                    s = torch.sigmoid(s)
                out[start : start + len(chunk)] = s.view(len(chunk), n_items).numpy()
        return out

    def item_embeddings(self) -> np.ndarray:
        return np.hstack([self.net_.item_gmf.weight.detach().numpy(), self.net_.item_mlp.weight.detach().numpy()])

    def user_embeddings(self) -> np.ndarray:
        return np.hstack([self.net_.user_gmf.weight.detach().numpy(), self.net_.user_mlp.weight.detach().numpy()])

    # --- persistence ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"weights": {k: v.numpy() for k, v in self.net_.state_dict().items()}, "history": self.history_}

    def _load_state(self, state: dict[str, Any]) -> None:
        import torch

        data = self._require()
        net = _build_net(data.n_users, data.n_items, self.embedding_dim, tuple(self.mlp_layers), self.dropout)
        net.load_state_dict({k: torch.as_tensor(v) for k, v in state["weights"].items()})
        self.net_ = net.eval()
        self.history_ = state.get("history", [])
