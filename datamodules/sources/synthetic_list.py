"""The synthetic generator's optional multi-valued field (``SyntheticSource(list_field=...)``).

Each row holds 0 to ``max_len`` distinct tokens out of ``tokens`` (lengths uniform, tokens drawn
Zipf-like without repeats); the field's effect on the true logit is the mean of its tokens' weights
(0 for an empty list), part of the first-order family: what a mean-pooled first-order weight, so
LR, can represent. Its draws come from streams of their own, so a dataset without the field is the
same as before it existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datamodules.sources.multi import MultiColumn

WEIGHT_STD = 1.5  # of the token weights: the field is among the stronger first-order fields
ZIPF_EXPONENT = 1.1


@dataclass
class ListField:
    """name; tokens: distinct tokens; max_len: the most a row holds; weight: float64 ``[tokens]``;
    popularity: float64 ``[tokens]`` the tokens' drawing weights."""

    name: str
    tokens: int
    max_len: int
    weight: np.ndarray
    popularity: np.ndarray

    @classmethod
    def draw(cls, seed: int, name: str = "tags", tokens: int = 100, max_len: int = 8) -> "ListField":
        if tokens < max_len or max_len < 1:
            raise ValueError(f"list_field: needs 1 <= max_len <= tokens, got max_len={max_len}, tokens={tokens}")
        rng = np.random.default_rng([seed, 3])
        popularity = 1.0 / np.arange(1, tokens + 1) ** ZIPF_EXPONENT
        weight = rng.normal(0, WEIGHT_STD, tokens)
        return cls(str(name), int(tokens), int(max_len), weight, popularity / popularity.sum())

    def sample(self, rng: np.random.Generator, rows: int) -> np.ndarray:
        """int32 ``[rows, max_len]`` token ids, -1 after each row's list: distinct tokens per row (the
        first ``length`` of a Gumbel-top-k draw by popularity, in no particular order)."""
        keys = np.log(self.popularity) - np.log(-np.log(rng.random((rows, self.tokens))))
        ranked = np.argpartition(-keys, self.max_len - 1, axis=1)[:, : self.max_len].astype(np.int32)
        lengths = rng.integers(0, self.max_len + 1, (rows, 1))
        return np.where(np.arange(self.max_len) < lengths, ranked, -1)

    def effect(self, codes: np.ndarray) -> np.ndarray:
        """float64 ``[rows]``: the mean weight of each row's tokens (0 when it has none)."""
        present = codes >= 0
        total = np.where(present, self.weight[np.maximum(codes, 0)], 0.0).sum(axis=1)
        return total / np.maximum(present.sum(axis=1), 1)

    def column(self, codes: np.ndarray) -> MultiColumn:
        """The rows' lists as a source yields them (each token keyed by its id)."""
        lengths = (codes >= 0).sum(axis=1).astype(np.int32)
        return MultiColumn(codes, np.arange(self.tokens, dtype=np.int64), False, lengths)

    def config(self) -> dict:
        return {"name": self.name, "tokens": self.tokens, "max_len": self.max_len}
