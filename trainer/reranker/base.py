"""The cross-encoder's base, optionally cut to its first layers.

A MiniLM-L6 pass over 20 pairs of 64 tokens costs about twice what the 20-candidate
latency budget allows on two cores (docs/search-reranking.md); the cost of a pass is
nearly linear in the number of transformer layers. Keeping the first ``layers`` of the
packaged MiniLM (its embeddings and lower layers, the way DistilBERT-style students are
initialised) and fine-tuning that as the cross-encoder halves the cost at 3 layers, and
halves the fine-tuning time too. The cut model is saved with its config
(``num_hidden_layers``), so a saved run reloads as the smaller model.
"""
from __future__ import annotations


def encoder_layers(cross_encoder) -> int:
    """How many transformer layers the cross-encoder's model has."""
    return int(cross_encoder.model.config.num_hidden_layers)


def keep_first_layers(cross_encoder, layers: int):
    """Cut ``cross_encoder`` (in place) to its first ``layers`` transformer layers; 0 or at
    least the model's count leaves it whole. Returns it.

    >>> import types
    >>> enc = types.SimpleNamespace(layer=[1, 2, 3, 4, 5, 6])
    >>> cfg = types.SimpleNamespace(num_hidden_layers=6)
    >>> ce = types.SimpleNamespace(model=types.SimpleNamespace(config=cfg,
    ...     base_model=types.SimpleNamespace(encoder=enc)))
    >>> keep_first_layers(ce, 3).model.base_model.encoder.layer, cfg.num_hidden_layers
    ([1, 2, 3], 3)
    >>> keep_first_layers(ce, -1)
    Traceback (most recent call last):
    ValueError: layers must be >= 0 (0: all of them), got -1
    """
    if layers < 0:
        raise ValueError(f"layers must be >= 0 (0: all of them), got {layers}")
    total = encoder_layers(cross_encoder)
    if layers == 0 or layers >= total:
        return cross_encoder
    encoder = cross_encoder.model.base_model.encoder
    encoder.layer = encoder.layer[:layers]
    cross_encoder.model.config.num_hidden_layers = layers
    return cross_encoder
