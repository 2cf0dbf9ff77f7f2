"""Mult-VAE (Liang et al., 2018): a variational autoencoder over each user's item set.

The encoder reads a user's (L2-normalised, dropout-corrupted) interaction row and gives a
Gaussian over a ``latent_dim`` code; the decoder turns a code into a multinomial over all
items. Trained with the multinomial log-likelihood plus a KL term whose weight grows to
``beta`` over the first half of training (KL annealing). A user is scored by encoding their
row, so users who arrive after training are folded in without retraining the items.
Non-linear and user-based, it blends well with the item-item models (EASE).

``ensemble = n`` trains ``n`` networks from seeds ``seed … seed+n-1`` and averages their
per-user standardised scores: the single networks differ noticeably from seed to seed on a
dataset as small as MovieLens-100K, and their average is better than any of them.

Training reads each batch as sparse rows: the encoder's first layer sums the weight rows of
the items a user has (``embedding_bag``) and dropout draws one coin per interaction, not one
per item of the catalogue. The maths are the dense model's (a zero input contributes nothing
and stays zero under dropout), at a fraction of the cost: on MovieLens-100K (6 % dense) the
dense first layer and its 1.6M dropout coins per batch were two thirds of a step.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from trainer.base import Recommender
from trainer.data.interactions import Interactions
from trainer.device import pick_device
from trainer.models._training import adam, dropout, epoch_progress, seed_everything, torch_threads

log = logging.getLogger("streamrec.trainer.multvae")

#: Users scored per dense block (``_score_users``): bounds memory on large catalogues.
SCORE_BLOCK = 2048


def _build_net(n_items: int, latent: int, hidden: int):
    import torch
    from torch import nn

    class ItemInput(nn.Module):
        """The first layer, item-major (``weight[item]`` is an item's row) so that a sparse
        row reads the rows of its items; initialised as ``nn.Linear(n_items, width)``."""

        def __init__(self, width: int) -> None:
            super().__init__()
            bound = 1.0 / np.sqrt(n_items)
            self.weight = nn.Parameter(torch.empty(n_items, width).uniform_(-bound, bound))
            self.bias = nn.Parameter(torch.empty(width).uniform_(-bound, bound))

        def forward(self, x):  # dense rows (scoring)
            return torch.addmm(self.bias, x, self.weight)

        def sparse(self, items, offsets, values):  # training batches
            from torch.nn import functional as F

            return F.embedding_bag(items, self.weight, offsets, mode="sum", per_sample_weights=values) + self.bias

    class MultVAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.items = ItemInput(hidden or 2 * latent)
            self.encoder = nn.Sequential(nn.Tanh(), nn.Linear(hidden, 2 * latent)) if hidden else nn.Identity()
            if hidden:
                self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, n_items))
            else:
                self.decoder = nn.Sequential(nn.Tanh(), nn.Linear(latent, n_items))

        def _code(self, first, sample: bool):
            mu, logvar = self.encoder(first).chunk(2, dim=-1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
            kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1))
            return self.decoder(z), kl, mu

        def forward(self, x):
            """Dense rows, no noise: (logits, kl, mu)."""
            from torch.nn import functional as F

            return self._code(self.items(F.normalize(x, dim=-1)), sample=False)

        def forward_sparse(self, batch, rate: float):
            """A training batch (``SparseRows``), with input dropout and a sampled code."""
            values = dropout(batch.norm_values, rate)
            return self._code(self.items.sparse(batch.items, batch.offsets, values), sample=True)

    return MultVAE()


class SparseRows:
    """Rows ``users`` of a binary CSR matrix as torch index tensors: the items, where each row
    starts, each value already L2-normalised by its row (``1/sqrt(row length)``), and the
    row of each entry (for the loss, which sums log-probabilities over a user's items)."""

    def __init__(self, matrix, users: np.ndarray, device) -> None:
        import torch

        sub = matrix[users]
        lengths = np.diff(sub.indptr)
        self.n = len(users)
        self.items = torch.as_tensor(sub.indices.astype(np.int64), device=device)
        self.offsets = torch.as_tensor(sub.indptr[:-1].astype(np.int64), device=device)
        rows = np.repeat(np.arange(self.n), lengths)
        self.rows = torch.as_tensor(rows, device=device)
        norm = 1.0 / np.sqrt(np.maximum(lengths, 1)).astype(np.float32)
        self.norm_values = torch.as_tensor(norm[rows], device=device)


def _binary(matrix):
    m = matrix.tocsr().astype(np.float32)
    m.data = (m.data > 0).astype(np.float32)
    m.eliminate_zeros()
    m.sort_indices()
    return m


def _from_dense_layout(weights: dict[str, Any], hidden: int) -> dict[str, Any]:
    """A run saved before the sparse first layer (``encoder.weight`` item-minor, ``nn.Linear``
    names) in today's layout."""
    if "items.weight" in weights:
        return weights
    first = "encoder.0" if hidden else "encoder"
    out = {"items.weight": np.ascontiguousarray(np.asarray(weights[f"{first}.weight"]).T),
           "items.bias": weights[f"{first}.bias"]}
    for key, value in weights.items():
        if key.startswith("encoder.2."):
            out["encoder.1." + key.removeprefix("encoder.2.")] = value
        elif key.startswith("decoder."):
            out[key] = value
    return out


class MultVAE(Recommender):
    name = "multvae"

    def __init__(self, latent_dim: int = 200, hidden_dim: int = 0, dropout: float = 0.5, beta: float = 0.2,
                 epochs: int = 150, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.0,
                 ensemble: int = 1, warm_epochs: int = 20, device: str = "auto", threads: int | None = None,
                 seed: int = 0, verbose: bool = False):
        if ensemble < 1:
            raise ValueError(f"multvae ensemble must be at least 1, got {ensemble}")
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.ensemble = ensemble
        self.warm_epochs = warm_epochs
        self.device = device
        self.threads = threads
        self.seed = seed
        self.verbose = verbose
        self.nets_: list = []
        self.history_: list[dict[str, float]] = []

    @property
    def seconds_per_epoch(self) -> float:
        secs = [h["seconds"] for h in self.history_]
        return float(np.mean(secs)) if secs else float("nan")

    def members(self, parts: int) -> list["MultVAE"]:
        """This ensemble as ``parts`` smaller ones, each with its share of the members (``seed + a`` …
        ``seed + b - 1``; a fitted model's parts carry its networks). Fitted apart (side by side, in
        ``trainer.fit_pool``'s workers) and put back with ``join``, they are the members this model's
        own fit makes, float for float: every member seeds its own random streams."""
        bounds = np.linspace(0, self.ensemble, min(parts, self.ensemble) + 1).round().astype(int)
        out = []
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            part = type(self)(**{**self.get_params(), "ensemble": hi - lo, "seed": self.seed + lo})
            if self.nets_:
                part.data, part.nets_ = self.data, self.nets_[lo:hi]
                part.history_ = [h for h in self.history_ if lo <= h["member"] < hi]
            out.append(part)
        return out

    def join(self, parts: list["MultVAE"]) -> "MultVAE":
        """This model, made of fitted ``parts`` (``members``, in order)."""
        self.data = parts[0].data
        self.nets_ = [net for part in parts for net in part.nets_]
        self.history_ = [{**h, "member": h["member"] + part.seed - self.seed} for part in parts for h in part.history_]
        return self

    def _rows(self, data: Interactions, uidx: np.ndarray):
        import torch

        return torch.as_tensor(_binary(data.matrix[uidx]).toarray(), dtype=torch.float32)

    def _fit(self, data: Interactions) -> None:
        self.nets_, self.history_ = [], []
        for member in range(self.ensemble):
            self.nets_.append(self._fit_one(data, self.seed + member))

    def _fit_warm(self, data: Interactions, previous: "MultVAE") -> None:
        """Start from ``previous``'s networks (item rows of the first layer and of the decoder's
        output carried over by item id; new items start fresh) and train ``warm_epochs`` epochs
        at the full KL weight. Users need nothing: a user is encoded from their row."""
        from trainer.models._warm import carry_rows, index_map

        new_pos, old_pos = index_map(previous._require().item_ids, data.item_ids)
        self.nets_, self.history_ = [], []
        last_out = "decoder.2" if self.hidden_dim else "decoder.1"
        for member, old in enumerate(previous.nets_[: self.ensemble]):
            seed_everything(self.seed + member)
            net = _build_net(data.n_items, self.latent_dim, self.hidden_dim)
            fresh, prior = net.state_dict(), old.state_dict()
            for key, value in prior.items():
                if key.startswith("items.weight") or key.startswith(last_out):
                    carry_rows(fresh[key], value, new_pos, old_pos, dim=0)
                elif fresh[key].shape == value.shape:
                    fresh[key].copy_(value)
            net.load_state_dict(fresh)
            self.nets_.append(self._train(net, data, self.seed + member, self.warm_epochs, anneal=False,
                                          users=getattr(self, "focus_users_", None)))
        for member in range(len(self.nets_), self.ensemble):  # a larger ensemble than before: new members cold
            self.nets_.append(self._fit_one(data, self.seed + member))

    def _fit_one(self, data: Interactions, seed: int):
        rng = seed_everything(seed)  # once: the initialisation and the training draws follow one stream
        net = _build_net(data.n_items, self.latent_dim, self.hidden_dim)
        return self._train(net, data, seed, self.epochs, anneal=True, rng=rng)

    def _train(self, net, data: Interactions, seed: int, epochs: int, anneal: bool, users=None, rng=None):
        from torch.nn import functional as F

        with torch_threads(self.threads):
            rng = seed_everything(seed) if rng is None else rng
            dev = pick_device(self.device)
            matrix = _binary(data.matrix)
            active = np.flatnonzero(np.diff(matrix.indptr) > 0)
            if users is not None:  # an update trains on the users its new events touch
                active = np.intersect1d(active, users)
            if len(active) == 0:
                raise ValueError("multvae: no user has a positive interaction")
            net = net.to(dev)
            opt = adam(net.parameters(), self.lr, self.weight_decay, dev)
            anneal_epochs = max(1, self.epochs // 2) if anneal else 0
            with epoch_progress("multvae", epochs, self.verbose) as advance:
                for epoch in range(epochs):
                    t0 = time.perf_counter()
                    net.train()
                    weight = self.beta * (min(1.0, epoch / anneal_epochs) if anneal_epochs else 1.0)
                    total = 0.0
                    active = rng.permutation(active)
                    for start in range(0, len(active), self.batch_size):
                        batch = SparseRows(matrix, active[start : start + self.batch_size], dev)
                        logits, kl, _ = net.forward_sparse(batch, self.dropout)
                        # the multinomial log-likelihood of a binary row: its items' log-probabilities
                        picked = F.log_softmax(logits, dim=-1)[batch.rows, batch.items]
                        loss = -picked.sum() / batch.n + weight * kl
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                        total += float(loss.detach()) * batch.n
                    entry = {"member": seed - self.seed, "epoch": epoch + 1, "train_loss": total / max(len(active), 1),
                             "seconds": time.perf_counter() - t0}
                    self.history_.append(entry)
                    log.info("multvae epoch %d loss=%.4f", epoch + 1, entry["train_loss"])
                    advance(loss=entry["train_loss"])
            return net.cpu().eval()

    def _score_users(self, uidx: np.ndarray) -> np.ndarray:
        import torch

        from ranking.scores import rescale

        blocks = []
        for start in range(0, len(uidx), SCORE_BLOCK):
            x = self._rows(self._require(), uidx[start : start + SCORE_BLOCK])
            with torch.no_grad():
                logits = [net(x)[0].numpy() for net in self.nets_]
            blocks.append(logits[0] if len(logits) == 1
                          else np.mean([rescale(s) for s in logits], axis=0).astype(np.float32))
        if not blocks:
            return np.zeros((0, self._require().n_items), dtype=np.float32)
        return np.vstack(blocks)

    def item_embeddings(self) -> np.ndarray:
        return np.hstack([net.decoder[-1].weight.detach().numpy() for net in self.nets_])

    def user_embeddings(self) -> np.ndarray:
        import torch

        x = self._rows(self._require(), np.arange(self._require().n_users))
        with torch.no_grad():
            return np.hstack([net(x)[2].numpy() for net in self.nets_])

    def _state(self) -> dict[str, Any]:
        return {"weights": [{k: v.numpy() for k, v in net.state_dict().items()} for net in self.nets_],
                "history": self.history_}

    def _load_state(self, state: dict[str, Any]) -> None:
        import torch

        self.nets_ = []
        for weights in state["weights"]:
            net = _build_net(self._require().n_items, self.latent_dim, self.hidden_dim)
            weights = _from_dense_layout(weights, self.hidden_dim)
            net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in weights.items()})
            self.nets_.append(net.eval())
        self.history_ = state.get("history", [])
