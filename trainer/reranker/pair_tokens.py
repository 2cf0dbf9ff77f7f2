"""(query, item text) pairs into the cross-encoder's input arrays, the items' tokens cached.

A reranked list's item texts come back request after request (they are the catalogue), while
the query changes; tokenising 20 abstracts of ~900 characters costs about as much as a tenth
of the int8 model's pass. So each item text is tokenised once (its first ``2 * max_length``
tokens, no special tokens, an LRU cache) and each query once per call; the pair is then
truncated and given its special tokens by the tokenizer's own post-processing
(``tokenizers.Tokenizer.post_process``, longest-first, as encoding the pair whole does).

Why the result is the same as tokenising the whole pair: a text's first tokens do not depend
on what follows them, and longest-first truncation of (query, text) to ``max_length`` keeps
the same tokens of both whenever the text keeps at least ``max_length`` tokens and more than
the query: it removes from the longer side first, then from both in turn. A query of
``2 * max_length`` tokens or more is tokenised with its texts whole. The unit tests compare
with ``CrossEncoder.predict``.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np

ITEM_CACHE = 20_000  # item texts whose tokens are kept (a few kB each)


class PairTokenizer:
    """``tokenizer.json`` of a model folder, for pairs truncated at ``max_length``."""

    def __init__(self, tokenizer_file: Path, max_length: int, cache_size: int = ITEM_CACHE):
        from tokenizers import Tokenizer

        self.max_length = int(max_length)
        self.prefix = 2 * self.max_length

        def make(truncate: int | None):
            tok = Tokenizer.from_file(str(tokenizer_file))
            tok.no_padding()
            if truncate is None:
                tok.no_truncation()
            else:
                tok.enable_truncation(truncate, strategy="longest_first")
            return tok

        self._pair, self._item, self._query = make(self.max_length), make(self.prefix), make(None)
        self._item_tokens = functools.lru_cache(maxsize=cache_size)(
            lambda text: self._item.encode(text, add_special_tokens=False))

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        """``input_ids``, ``token_type_ids``, ``attention_mask`` (int64), padded to the longest pair."""
        queries: dict[str, object] = {}
        encodings = []
        for query, text in pairs:
            q = queries.get(query)
            if q is None:
                q = queries[query] = self._query.encode(query, add_special_tokens=False)
            if len(q.ids) >= self.prefix:
                encodings.append(self._pair.encode(query, text))
            else:
                encodings.append(self._pair.post_process(q, self._item_tokens(text), add_special_tokens=True))
        width = max((len(e.ids) for e in encodings), default=0)
        out = {k: np.zeros((len(encodings), width), dtype=np.int64)
               for k in ("input_ids", "token_type_ids", "attention_mask")}
        for row, e in enumerate(encodings):
            n = len(e.ids)
            out["input_ids"][row, :n] = e.ids
            out["token_type_ids"][row, :n] = e.type_ids
            out["attention_mask"][row, :n] = e.attention_mask
        return out
