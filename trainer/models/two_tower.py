"""Two-tower retrieval model: a user tower and an item tower meeting in one dot product.

- item tower: item id embedding + mean embedding of its category tokens + mean embedding
  of its (hashed) title/text words → MLP → L2-normalised vector;
- user tower: user id embedding + mean embedding of its metadata tokens (segment,
  profession, level) → MLP → L2-normalised vector;
- trained with a softmax over items: ``in_batch`` (the other positives of the batch are the
  negatives, with the logQ popularity correction) or ``sampled`` (``num_sampled`` uniform
  random items shared by the batch); early stopping on a held-out slice keeps the best
  weights.

The item tower's outputs are exported as the item embeddings (the FAISS index is built on
them), the user tower's as user embeddings; ``score = cosine / temperature``.
"""
from __future__ import annotations

import logging
import time
import zlib
from typing import Any

import numpy as np

from trainer.base import Recommender
from trainer.data.interactions import Interactions
from trainer.device import pick_device
from trainer.models._features import item_text, item_tokens, user_tokens, vocabulary, words
from trainer.models._training import (EarlyStopping, adam, epoch_progress, fast_dropout_module, seed_everything,
                                      torch_threads)

log = logging.getLogger("streamrec.trainer.two_tower")


def token_matrix(token_ids: list[list[int]], max_len: int) -> np.ndarray:
    """Pad lists of token ids (ids start at 1; 0 is padding) into a fixed-width matrix.

    >>> token_matrix([[3, 1], [], [2, 2, 2]], 2).tolist()
    [[3, 1], [0, 0], [2, 2]]
    """
    out = np.zeros((len(token_ids), max(max_len, 1)), dtype=np.int64)
    for r, ids in enumerate(token_ids):
        ids = ids[:max_len]
        out[r, : len(ids)] = ids
    return out


def hashed_words(text: str, buckets: int) -> list[int]:
    """Stable hashed word ids in ``1..buckets`` (0 is padding).

    >>> hashed_words("Toy toy", 1000) == [hashed_words("toy", 1000)[0]] * 2
    True
    """
    return [1 + zlib.crc32(w.encode()) % buckets for w in words(text)]


def _build_net(n_users, n_items, user_tok, item_cat, item_txt, n_user_tok, n_item_cat, text_buckets,
               dim, layers, dropout):
    import torch
    from torch import nn
    from torch.nn import functional as F

    def mlp(width_in: int) -> nn.Sequential:
        blocks: list[nn.Module] = []
        width = width_in
        for size in layers[:-1]:
            blocks += [nn.Linear(width, size), nn.ReLU(), fast_dropout_module(dropout)]
            width = size
        blocks.append(nn.Linear(width, layers[-1]))
        return nn.Sequential(*blocks)

    class TwoTowerNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.user_id = nn.Embedding(n_users, dim)
            self.user_tok = nn.EmbeddingBag(n_user_tok + 1, dim, mode="mean", padding_idx=0)
            self.item_id = nn.Embedding(n_items, dim)
            self.item_cat = nn.EmbeddingBag(n_item_cat + 1, dim, mode="mean", padding_idx=0)
            self.item_txt = nn.EmbeddingBag(text_buckets + 1, dim, mode="mean", padding_idx=0)
            self.user_mlp = mlp(2 * dim)
            self.item_mlp = mlp(3 * dim)
            self.register_buffer("u_tok", torch.as_tensor(user_tok))
            self.register_buffer("i_cat", torch.as_tensor(item_cat))
            self.register_buffer("i_txt", torch.as_tensor(item_txt))
            for emb in (self.user_id, self.item_id):
                nn.init.normal_(emb.weight, std=0.05)

        def users(self, u):
            x = torch.cat([self.user_id(u), self.user_tok(self.u_tok[u])], dim=-1)
            return F.normalize(self.user_mlp(x), dim=-1)

        def items(self, i):
            x = torch.cat([self.item_id(i), self.item_cat(self.i_cat[i]), self.item_txt(self.i_txt[i])], dim=-1)
            return F.normalize(self.item_mlp(x), dim=-1)

    return TwoTowerNet()


class TwoTower(Recommender):
    name = "two_tower"

    def __init__(
        self,
        embedding_dim: int = 64,
        tower_layers: tuple[int, ...] | list[int] = (128, 64),
        dropout: float = 0.1,
        softmax: str = "in_batch",
        num_sampled: int = 256,
        temperature: float = 0.05,
        logq_correction: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 512,
        epochs: int = 40,
        patience: int | None = 5,
        warm_epochs: int = 5,
        distinct_classes: bool = False,
        val_fraction: float = 0.05,
        text_buckets: int = 4096,
        max_text_tokens: int = 32,
        use_user_features: bool = True,
        use_item_features: bool = True,
        device: str = "auto",
        threads: int | None = None,
        seed: int = 0,
        verbose: bool = False,
    ):
        if softmax not in ("in_batch", "sampled"):
            raise ValueError(f"two_tower softmax must be 'in_batch' or 'sampled', got {softmax!r}")
        self.embedding_dim = embedding_dim
        self.tower_layers = list(tower_layers)
        self.dropout = dropout
        self.softmax = softmax
        self.num_sampled = num_sampled
        self.temperature = temperature
        self.logq_correction = logq_correction
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.warm_epochs = warm_epochs
        self.distinct_classes = distinct_classes
        self.val_fraction = val_fraction
        self.text_buckets = text_buckets
        self.max_text_tokens = max_text_tokens
        self.use_user_features = use_user_features
        self.use_item_features = use_item_features
        self.device = device
        self.threads = threads
        self.seed = seed
        self.verbose = verbose
        self.net_ = None
        self.history_: list[dict[str, float]] = []
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def seconds_per_epoch(self) -> float:
        secs = [h["seconds"] for h in self.history_]
        return float(np.mean(secs)) if secs else float("nan")

    # --- features ----------------------------------------------------------------------------
    def _inputs(self, data: Interactions) -> dict[str, Any]:
        utoks = user_tokens(data) if self.use_user_features else [[] for _ in data.user_ids]
        itoks = item_tokens(data) if self.use_item_features else [[] for _ in data.item_ids]
        uvocab, ivocab = vocabulary(utoks), vocabulary(itoks)
        texts = item_text(data.item_meta, data.item_ids, ("title", "text")) if self.use_item_features \
            else ["" for _ in data.item_ids]
        return {
            "user_tok": token_matrix([[uvocab[t] + 1 for t in ts] for ts in utoks], max(map(len, utoks), default=1)),
            "item_cat": token_matrix([[ivocab[t] + 1 for t in ts] for ts in itoks], max(map(len, itoks), default=1)),
            "item_txt": token_matrix([hashed_words(t, self.text_buckets) for t in texts], self.max_text_tokens),
            "n_user_tok": len(uvocab),
            "n_item_cat": len(ivocab),
        }

    def _vocabularies(self, data: Interactions) -> tuple[dict, dict]:
        utoks = user_tokens(data) if self.use_user_features else []
        itoks = item_tokens(data) if self.use_item_features else []
        return vocabulary(utoks), vocabulary(itoks)

    def _make_net(self, data: Interactions, inputs: dict[str, Any]):
        return _build_net(data.n_users, data.n_items, inputs["user_tok"], inputs["item_cat"], inputs["item_txt"],
                          inputs["n_user_tok"], inputs["n_item_cat"], self.text_buckets, self.embedding_dim,
                          tuple(self.tower_layers), self.dropout)

    # --- training ------------------------------------------------------------------------------
    def _fit(self, data: Interactions) -> None:
        self._train(data, None, self.epochs)

    def _fit_warm(self, data: Interactions, previous: "TwoTower") -> None:
        """Start from ``previous``'s towers: id embeddings carried over by user and item id (new
        ones start fresh), token tables when the vocabularies are the same, hashed words and the
        MLPs as they are; then at most ``warm_epochs`` epochs, stopping early as a fit does."""
        self._train(data, previous, self.warm_epochs)

    def _carry(self, net, data: Interactions, previous: "TwoTower") -> None:
        from trainer.models._warm import carry_rows, index_map

        fresh, prior = net.state_dict(), previous.net_.state_dict()
        same_tokens = self._vocabularies(data) == previous._vocabularies(previous._require())
        for key, value in prior.items():
            if key in ("u_tok", "i_cat", "i_txt"):
                continue  # buffers: this data's features
            if key == "user_id.weight":
                carry_rows(fresh[key], value, *index_map(previous._require().user_ids, data.user_ids))
            elif key == "item_id.weight":
                carry_rows(fresh[key], value, *index_map(previous._require().item_ids, data.item_ids))
            elif key.startswith(("user_tok.", "item_cat.")) and not same_tokens:
                continue
            elif fresh[key].shape == value.shape:
                fresh[key].copy_(value)
        net.load_state_dict(fresh)

    def _train(self, data: Interactions, previous: "TwoTower | None", epochs: int) -> None:
        import torch

        with torch_threads(self.threads):
            rng = seed_everything(self.seed)
            dev = pick_device(self.device)
            m = data.matrix.tocoo()
            keep = m.data > 0
            focus = getattr(self, "focus_users_", None) if previous is not None else None
            if focus is not None:  # an update trains on the users its new events touch
                keep &= np.isin(m.row, focus)
            u, i = m.row[keep].astype(np.int64), m.col[keep].astype(np.int64)
            if len(u) == 0:
                raise ValueError("two_tower: no positive interactions to learn from")
            counts = np.bincount(i, minlength=data.n_items).astype(np.float64)
            logq = torch.as_tensor(np.log(np.maximum(counts, 1.0) / counts.sum()), dtype=torch.float32, device=dev)
            order = rng.permutation(len(u))
            n_val = int(len(u) * self.val_fraction) if self.val_fraction > 0 and len(u) >= 20 else 0
            val_idx, tr_idx = order[:n_val], order[n_val:]
            self._inputs_ = self._inputs(data)
            net = self._make_net(data, self._inputs_)
            if previous is not None:
                self._carry(net, data, previous)
            net = net.to(dev)
            opt = adam(net.parameters(), self.lr, self.weight_decay, dev)
            stopper = EarlyStopping(self.patience if n_val else None)
            self.history_ = []
            with epoch_progress("two_tower", epochs, self.verbose) as advance:
                for epoch in range(epochs):
                    t0 = time.perf_counter()
                    net.train()
                    perm = rng.permutation(tr_idx)
                    total = 0.0
                    for start in range(0, len(perm), self.batch_size):
                        b = perm[start : start + self.batch_size]
                        if len(b) < 2:
                            continue
                        loss = self._loss(net, torch.as_tensor(u[b], device=dev), torch.as_tensor(i[b], device=dev),
                                          logq, data.n_items, rng, dev)
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                        total += float(loss.detach()) * len(b)
                    train_loss = total / max(len(perm), 1)
                    seconds = time.perf_counter() - t0
                    val_loss = self._val_loss(net, u[val_idx], i[val_idx], logq, data.n_items, dev) if n_val \
                        else train_loss
                    self.history_.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                                          "seconds": seconds})
                    log.info("two_tower epoch %d train_loss=%.4f val_loss=%.4f %.1fs", epoch + 1, train_loss,
                             val_loss, seconds)
                    advance(loss=train_loss, val=val_loss)
                    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                    if stopper.step(val_loss, epoch, state):
                        break
            if stopper.best_state is not None:
                net.load_state_dict(stopper.best_state)
            self.net_ = net.cpu().eval()
            self._cache = None

    def _loss(self, net, u, i, logq, n_items, rng, dev):
        import torch
        from torch.nn import functional as F

        ue = net.users(u)
        if self.softmax == "in_batch" and not self.distinct_classes:
            logits = ue @ net.items(i).T / self.temperature
            if self.logq_correction:
                logits = logits - logq[i][None, :]
            # duplicates of the same item in a batch are not negatives of each other
            same = (i[:, None] == i[None, :]) & ~torch.eye(len(i), dtype=torch.bool, device=dev)
            logits = logits.masked_fill(same, -1e9)
            return F.cross_entropy(logits, torch.arange(len(i), device=dev))
        if self.softmax == "in_batch":
            # distinct_classes: the batch's distinct items are the classes: an item twice in a batch is one class (never
            # a negative of itself), and the item tower and the logits are |distinct| wide, not |batch|
            # (a large batch of a small catalogue costs little more than the catalogue)
            uniq, target = torch.unique(i, return_inverse=True)
            logits = ue @ net.items(uniq).T / self.temperature
            if self.logq_correction:
                logits = logits - logq[uniq][None, :]
            return F.cross_entropy(logits, target)
        neg = torch.as_tensor(rng.integers(0, n_items, size=self.num_sampled), device=dev)
        pos = (ue * net.items(i)).sum(-1, keepdim=True) / self.temperature
        negl = ue @ net.items(neg).T / self.temperature
        if self.logq_correction:
            negl = negl - np.log(self.num_sampled / n_items)
        negl = negl.masked_fill(neg[None, :] == i[:, None], -1e9)
        return F.cross_entropy(torch.cat([pos, negl], dim=1), torch.zeros(len(i), dtype=torch.long, device=dev))

    def _val_loss(self, net, u, i, logq, n_items, dev) -> float:
        import torch

        net.eval()
        rng = np.random.default_rng(self.seed + 1)  # same negatives every epoch: comparable losses
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(u), self.batch_size):
                bu, bi = u[start : start + self.batch_size], i[start : start + self.batch_size]
                if len(bu) < 2:
                    continue
                loss = self._loss(net, torch.as_tensor(bu, device=dev), torch.as_tensor(bi, device=dev), logq,
                                  n_items, rng, dev)
                total += float(loss) * len(bu)
        return total / max(len(u), 1)

    # --- embeddings and scores ---------------------------------------------------------------------
    def _towers(self) -> tuple[np.ndarray, np.ndarray]:
        import torch

        if self._cache is None:
            data = self._require()
            with torch.no_grad():
                ue = self.net_.users(torch.arange(data.n_users)).numpy()
                ie = self.net_.items(torch.arange(data.n_items)).numpy()
            self._cache = (ue, ie)
        return self._cache

    def _score_users(self, uidx: np.ndarray) -> np.ndarray:
        ue, ie = self._towers()
        return ue[uidx] @ ie.T / self.temperature

    def item_embeddings(self) -> np.ndarray:
        return self._towers()[1]

    def user_embeddings(self) -> np.ndarray:
        return self._towers()[0]

    def _state(self) -> dict[str, Any]:
        return {"weights": {k: v.numpy() for k, v in self.net_.state_dict().items()}, "inputs": self._inputs_,
                "history": self.history_}

    def _load_state(self, state: dict[str, Any]) -> None:
        import torch

        self._inputs_ = state["inputs"]
        net = self._make_net(self._require(), self._inputs_)
        net.load_state_dict({k: torch.as_tensor(v) for k, v in state["weights"].items()})
        self.net_ = net.eval()
        self.history_ = state.get("history", [])
        self._cache = None
