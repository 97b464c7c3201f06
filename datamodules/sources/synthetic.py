"""Criteo-shaped synthetic data whose click probabilities are known.

Everything follows from ``seed``: the fields (13 heavy-tailed integer fields with missing values,
26 Zipf-distributed categorical fields with 3 to ``max_cardinality`` values) and the true model

    logit p(y=1|x) = bias + first_order * F(x) + pairwise * P(x) + higher_order * H(x)

- F: one weight per categorical value (missing is a value too) plus a smooth function of each
  numeric field's log, i.e. what logistic regression on one-hot/bucketized features can fit;
- P: an FM over the mid-cardinality categorical fields, sum_{i<j} <v_i, v_j> with latent vectors
  centred under each field's value distribution, so that P carries no first-order signal;
- H: products t_a t_b t_c over field triples, of centred scalars, so that H carries no first- or
  second-order signal in the logit (only models of higher-order interactions can use it).

Each family is scaled to the given standard deviation on a pilot sample (0 switches it off) and
``bias`` is solved so that the mean click probability is ``positive_rate``.

The families are orthogonal in the logit: with independent fields and P, H built from centred
tables, P has no component that is a sum of one-field functions, and H none that is a sum of one-
or two-field functions. So the best approximation of the true logit (in mean square, over the
data's distribution) that LR can represent (sums of one-field functions) is ``bias + F``, and that
FM can represent (plus a sum of field-pair products) is ``bias + F + P``. The **ceilings** are
those parts of the true logit, recalibrated:

    ceiling_first_order = sigmoid(a_1 (bias + F) + c_1)
    ceiling_pairwise    = sigmoid(a_2 (bias + F + P) + c_2)

with ``(a, c)`` fitted once on the pilot sample to the true probabilities (least cross-entropy:
Platt scaling), so that a ceiling's LogLoss is that of a calibrated predictor; a monotone map
leaves its AUC that of the part itself. A ceiling is what a model of the family reaches if it
learns its part of the logit exactly and nothing else; it equals the full oracle when the
families it leaves out are switched off (then ``a = 1, c = 0``). The ranking a family can reach
may differ slightly from its part's, as AUC is not the mean-square fit; the ceiling is the
family's share of the signal, not a proven bound on every metric. Rows are generated in
fixed blocks of ``BLOCK_ROWS``, each from its own seeded stream, so any number of rows streams in
bounded memory and the rows do not depend on how they are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np

from datamodules.errors import RejectLog
from datamodules.sources.base import WHOLE, CategoricalColumn, RawChunk, Source
from datamodules.sources.multi import MultiValued
from datamodules.sources.synthetic_list import ListField

BLOCK_ROWS = 1 << 17
PILOT_ROWS = 1 << 16
GENERATOR_VERSION = 2  # 2: the ceilings (p_ceiling) beside the true probabilities
CEILINGS = ("first_order", "pairwise")  # the families a ceiling keeps: F; F and P
PAIRWISE_CARDINALITY = (5, 300)  # FM fields: frequent enough values for latent vectors to be learnt
TRIPLE_MAX_CARDINALITY = 12  # few enough value combinations for ~100k rows to show them
NUM_TRIPLES = 3


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class _TrueModel:
    """The drawn fields and effects. Per categorical field f, arrays are indexed by value rank
    ``0..card_f-1`` with index ``card_f`` standing for 'missing'."""

    cdf: list[np.ndarray]  # [card_f] cumulative Zipf probabilities over ranks
    value_id: list[np.ndarray]  # [card_f] the raw (hash-like) id written for each rank
    cat_missing: np.ndarray  # [26] probability that the field is empty
    num_mu: np.ndarray  # [13] log-scale location of the numeric fields
    num_sigma: np.ndarray  # [13] log-scale spread (heavy tails)
    num_shift: np.ndarray  # [13] added after flooring, so some fields reach -1 or below
    num_missing: np.ndarray  # [13]
    cat_weight: list[np.ndarray]  # [card_f + 1] first-order effects
    num_effect: np.ndarray  # [13, 4] amplitude, centre, width, effect-if-missing
    pair_fields: list[int]
    latent: list[np.ndarray]  # [card_f + 1, k] per pair field, centred
    triples: list[tuple[int, int, int]]
    triple_tables: list[list[np.ndarray]]  # per triple, per member: [card_f + 1], centred
    scale: np.ndarray  # [3] multiplies F, P, H (the config's std over each family's pilot std)
    bias: float
    ceiling_calibration: np.ndarray  # [2, 2]: (a, c) of each ceiling, see the module docstring


class SyntheticSource(Source):
    """Criteo-shaped rows (I1..I13 numeric, C1..C26 categorical) with their true probabilities.

    rows: rows to generate; seed: fixes fields, true model and rows; first_order / pairwise /
    higher_order: standard deviation of each effect family's contribution to the logit (0 = off);
    positive_rate: mean click probability; max_cardinality: values of the largest field;
    latent_dim: rank of the pairwise effects; cardinalities: the categorical fields' sizes, in
    field order, instead of a geometric range up to ``max_cardinality`` (e.g. Frappe's);
    missing_values: False leaves no field empty; field_names: the categorical fields' names instead
    of C1, C2, ... (names change no drawn value); list_field: ``{name, tokens, max_len}`` adds a
    multi-valued field whose tokens carry first-order signal (``synthetic_list``), None leaves it out.
    """

    default_name = "synthetic"
    progress_unit = "rows"
    ceiling_names = CEILINGS

    def __init__(
        self,
        rows: int = 100_000,
        seed: int = 0,
        first_order: float = 1.0,
        pairwise: float = 1.5,
        higher_order: float = 1.0,
        positive_rate: float = 0.25,
        num_numeric: int = 13,
        num_categorical: int = 26,
        max_cardinality: int = 40_000,
        latent_dim: int = 4,
        cardinalities: Optional[Sequence[int]] = None,
        missing_values: bool = True,
        field_names: Optional[Sequence[str]] = None,
        list_field: Optional[Mapping] = None,
    ):
        if cardinalities is not None:
            num_categorical = len(cardinalities)
        if rows < 1 or num_categorical < 4 or not 0 < positive_rate < 1:
            raise ValueError("SyntheticSource: need rows >= 1, num_categorical >= 4, 0 < positive_rate < 1")
        if min(first_order, pairwise, higher_order) < 0 or max(first_order, pairwise, higher_order) == 0:
            raise ValueError("SyntheticSource: effect scales must be >= 0 and not all 0")
        self.config = dict(
            rows=int(rows),
            seed=int(seed),
            first_order=float(first_order),
            pairwise=float(pairwise),
            higher_order=float(higher_order),
            positive_rate=float(positive_rate),
            num_numeric=int(num_numeric),
            num_categorical=int(num_categorical),
            max_cardinality=int(max_cardinality),
            latent_dim=int(latent_dim),
        )
        if cardinalities is not None:  # only when set, so that older configs keep their cache key
            self.config["cardinalities"] = [int(c) for c in cardinalities]
        if not missing_values:
            self.config["missing_values"] = False
        self.rows, self.seed = int(rows), int(seed)
        self.numeric_fields = tuple(f"I{i}" for i in range(1, num_numeric + 1))
        self.categorical_fields = tuple(f"C{i}" for i in range(1, num_categorical + 1))
        if field_names is not None:
            if len(field_names) != num_categorical or len(set(field_names)) != num_categorical:
                raise ValueError(
                    f"SyntheticSource: field_names must name the {num_categorical} categorical fields once each"
                )
            self.categorical_fields = tuple(str(name) for name in field_names)
            self.config["field_names"] = list(self.categorical_fields)
        self.list_field = None
        if list_field is not None:  # only when set, so that older configs keep their cache key
            self.list_field = ListField.draw(self.seed, **dict(list_field))
            self.config["list_field"] = self.list_field.config()
            self.multi_valued = {self.list_field.name: MultiValued(max_len=self.list_field.max_len)}
        self.model = self._draw_model()

    # ------------------------------------------------------------------ Source interface

    def parts(self) -> tuple[str, ...]:
        return (WHOLE,)

    def identity(self) -> dict:
        return {
            "format": "synthetic",
            "version": GENERATOR_VERSION,
            **self.config,
            "block_rows": BLOCK_ROWS,
            "pilot_rows": PILOT_ROWS,
            "pairwise_cardinality": PAIRWISE_CARDINALITY,
            "triple_max_cardinality": TRIPLE_MAX_CARDINALITY,
            "triples": NUM_TRIPLES,
        }

    def count_rows(self, part: str) -> int:
        return self.rows

    def progress_total(self, part: str) -> int:
        return self.rows

    @property
    def has_true_probabilities(self) -> bool:
        return True

    def read(self, part: str, rejects: RejectLog, block_bytes: int = 0) -> Iterator[RawChunk]:
        for block in range((self.rows + BLOCK_ROWS - 1) // BLOCK_ROWS):
            yield self.block(block)

    def block(self, block: int) -> RawChunk:
        """Rows ``[block * BLOCK_ROWS, ...)``: a fixed function of (seed, block)."""
        start = block * BLOCK_ROWS
        rows = min(BLOCK_ROWS, self.rows - start)
        rng = np.random.default_rng([self.seed, 1, block])
        cat_index, numeric = self._sample_features(rng, rows)
        lists = self._lists(np.random.default_rng([self.seed, 4, block]), rows)
        families = self._families(cat_index, numeric, lists)
        probability = _sigmoid(self.model.bias + self.model.scale @ families)
        labels = (rng.random(rows) < probability).astype(np.float32)
        m = self.model
        categorical = [
            CategoricalColumn(np.where(index == len(ids), -1, index).astype(np.int32), ids)
            for index, ids in zip(cat_index, m.value_id)
        ]
        return RawChunk(
            row_index=np.arange(start, start + rows, dtype=np.int64),
            labels=labels,
            categorical=categorical,
            numeric=numeric,
            rows_read=rows,
            rows_rejected=0,
            progress=rows,
            true_probability=probability.astype(np.float32),
            ceiling_probability=self._ceilings(families).T.astype(np.float32),
            multi=[] if lists is None else [self.list_field.column(lists)],
        )

    # ------------------------------------------------------------------ generation

    def _draw_model(self) -> _TrueModel:
        """The fields and effects, all drawn from one stream seeded by ``seed``, in a fixed order
        (any change to the order changes every dataset), then calibrated on a pilot sample."""
        c = self.config
        rng = np.random.default_rng([self.seed, 0])
        n_cat, n_num = c["num_categorical"], c["num_numeric"]
        cardinality, cdf, value_id, probability, cat_missing = _draw_categorical_fields(rng, c)
        field_strength = rng.uniform(0.2, 1.0, n_cat)
        cat_weight = [rng.normal(0, strength, card + 1) for card, strength in zip(cardinality, field_strength)]
        num_effect = _draw_numeric_effects(rng, n_num)
        pair_fields, latent = _draw_pairwise(rng, cardinality, probability, c["latent_dim"])
        triples, triple_tables = _draw_triples(rng, cardinality, probability)
        num_mu, num_sigma, num_shift, num_missing = _draw_numeric_fields(rng, n_num, c.get("missing_values", True))

        model = _TrueModel(
            cdf=cdf,
            value_id=value_id,
            cat_missing=cat_missing,
            num_mu=num_mu,
            num_sigma=num_sigma,
            num_shift=num_shift,
            num_missing=num_missing,
            cat_weight=cat_weight,
            num_effect=num_effect,
            pair_fields=pair_fields,
            latent=latent,
            triples=triples,
            triple_tables=triple_tables,
            scale=np.ones(3),
            bias=0.0,
            ceiling_calibration=np.array([[1.0, 0.0], [1.0, 0.0]]),
        )
        self.model = model
        self._calibrate(np.random.default_rng([self.seed, 2]))
        return model

    def _calibrate(self, rng: np.random.Generator) -> None:
        """Scale each family to its configured std and solve the bias for the positive rate."""
        cat_index, numeric = self._sample_features(rng, PILOT_ROWS)
        lists = self._lists(np.random.default_rng([self.seed, 5]), PILOT_ROWS)
        families = self._families(cat_index, numeric, lists)
        target = np.array([self.config["first_order"], self.config["pairwise"], self.config["higher_order"]])
        spread = families.std(axis=1)
        self.model.scale = np.where(spread > 0, target / np.maximum(spread, 1e-12), 0.0)
        logit = self.model.scale @ families
        low, high = -20.0, 20.0
        for _ in range(60):  # bisection: mean sigmoid is increasing in the bias
            mid = (low + high) / 2
            low, high = (mid, high) if _sigmoid(logit + mid).mean() < self.config["positive_rate"] else (low, mid)
        self.model.bias = (low + high) / 2
        p_true = _sigmoid(logit + self.model.bias)
        for j, kept in enumerate((1, 2)):  # ceiling j keeps the first `kept` families
            if not self.model.scale[kept:].any():  # nothing left out: the ceiling is the oracle itself
                continue
            part = self.model.bias + self.model.scale[:kept] @ families[:kept]
            self.model.ceiling_calibration[j] = _platt(part, p_true)

    def _sample_features(self, rng: np.random.Generator, rows: int) -> tuple[list[np.ndarray], np.ndarray]:
        """-> (per categorical field: int64 ``[rows]`` value ranks, card = missing; numeric float64
        ``[rows, 13]`` with NaN = missing)."""
        m = self.model
        cat_index = []
        for cdf, miss in zip(m.cdf, m.cat_missing):
            rank = np.minimum(np.searchsorted(cdf, rng.random(rows), side="right"), len(cdf) - 1)
            cat_index.append(np.where(rng.random(rows) < miss, len(cdf), rank))
        z = rng.standard_normal((rows, len(m.num_mu)))
        numeric = np.floor(np.exp(m.num_mu + m.num_sigma * z)) + m.num_shift
        numeric[rng.random(numeric.shape) < m.num_missing] = np.nan
        return cat_index, numeric

    def _lists(self, rng: np.random.Generator, rows: int) -> Optional[np.ndarray]:
        """The rows' token ids of the multi-valued field (``ListField.sample``), None without one."""
        return None if self.list_field is None else self.list_field.sample(rng, rows)

    def _families(self, cat_index: list[np.ndarray], numeric: np.ndarray, lists: Optional[np.ndarray]) -> np.ndarray:
        """Unscaled effect families ``-> float64 [3, rows]``: first-order, pairwise, higher-order."""
        m = self.model
        first = sum(weight[index] for weight, index in zip(m.cat_weight, cat_index))
        if lists is not None:
            first = first + self.list_field.effect(lists)
        amplitude, centre, width, if_missing = m.num_effect.T
        shape = amplitude * np.tanh((np.log1p(np.maximum(np.nan_to_num(numeric), 0)) - centre) / width)
        first = first + np.where(np.isnan(numeric), if_missing, shape).sum(axis=1)

        vectors = [table[cat_index[f]] for f, table in zip(m.pair_fields, m.latent)]  # each [rows, k]
        if vectors:
            total = np.sum(vectors, axis=0)
            pair = 0.5 * ((total**2).sum(axis=1) - sum((v**2).sum(axis=1) for v in vectors))
        else:
            pair = np.zeros_like(first)
        higher = sum(
            np.prod([table[cat_index[f]] for f, table in zip(triple, tables)], axis=0)
            for triple, tables in zip(m.triples, m.triple_tables)
        )
        return np.stack([first, pair, np.broadcast_to(higher, first.shape)])

    def _ceilings(self, families: np.ndarray) -> np.ndarray:
        """Unscaled families ``[3, rows]`` -> the ceilings' probabilities ``[2, rows]``."""
        m = self.model
        out = []
        for (a, c), kept in zip(m.ceiling_calibration, (1, 2)):
            out.append(_sigmoid(a * (m.bias + m.scale[:kept] @ families[:kept]) + c))
        return np.stack(out)


def _draw_categorical_fields(rng: np.random.Generator, config: dict) -> tuple:
    """-> (int64 ``[n_cat]`` cardinalities; per field: ``[card]`` Zipf CDF over value ranks, ``[card]``
    distinct raw ids, ``[card + 1]`` probabilities incl. missing; float64 ``[n_cat]`` missing rates)."""
    n_cat = config["num_categorical"]
    cardinality = rng.permutation(np.geomspace(3, config["max_cardinality"], n_cat).round().astype(np.int64))
    if "cardinalities" in config:  # the permutation is drawn anyway: skipping it would move every later draw
        cardinality = np.array(config["cardinalities"], dtype=np.int64)
    exponent = rng.uniform(1.05, 1.5, n_cat)
    cat_missing = np.where(rng.random(n_cat) < 0.35, rng.uniform(0.02, 0.5, n_cat), 0.0)
    if not config.get("missing_values", True):
        cat_missing = np.zeros(n_cat)
    cdf, value_id, probability = [], [], []
    for card, s, miss in zip(cardinality, exponent, cat_missing):
        zipf = 1.0 / np.arange(1, card + 1) ** s
        zipf /= zipf.sum()
        cdf.append(np.cumsum(zipf))
        value_id.append(rng.choice(1 << 32, size=card, replace=False).astype(np.int64))
        probability.append(np.append((1 - miss) * zipf, miss))  # [card + 1] incl. missing
    return cardinality, cdf, value_id, probability, cat_missing


def _draw_numeric_effects(rng: np.random.Generator, n_num: int) -> np.ndarray:
    """``[n_num, 4]``: each numeric field's first-order effect, amplitude, centre, width, effect-if-missing."""
    return np.stack(
        [
            rng.normal(0, 0.8, n_num),
            rng.uniform(0.5, 4.0, n_num),
            rng.uniform(0.5, 2.0, n_num),
            rng.normal(0, 0.5, n_num),
        ],
        axis=1,
    )


def _draw_pairwise(
    rng: np.random.Generator, cardinality: np.ndarray, probability: list[np.ndarray], k: int
) -> tuple[list[int], list[np.ndarray]]:
    """-> (the FM fields: those of a cardinality within ``PAIRWISE_CARDINALITY``; per FM field its
    centred latent vectors ``[card + 1, k]``)."""
    low, high = PAIRWISE_CARDINALITY
    pair_fields = [f for f in range(len(cardinality)) if low <= cardinality[f] <= high]
    latent = [_centred(rng.normal(0, 1, (cardinality[f] + 1, k)), probability[f]) for f in pair_fields]
    return pair_fields, latent


def _draw_triples(
    rng: np.random.Generator, cardinality: np.ndarray, probability: list[np.ndarray]
) -> tuple[list[tuple[int, int, int]], list[list[np.ndarray]]]:
    """-> (``NUM_TRIPLES`` triples of distinct small fields; per triple, per member its centred
    scalar table ``[card + 1]``)."""
    small = [f for f in range(len(cardinality)) if cardinality[f] <= TRIPLE_MAX_CARDINALITY]
    triples = [tuple(int(f) for f in rng.choice(small, 3, replace=False)) for _ in range(NUM_TRIPLES)]
    triple_tables = [[_centred(rng.normal(0, 1, cardinality[f] + 1), probability[f]) for f in t] for t in triples]
    return triples, triple_tables


def _draw_numeric_fields(rng: np.random.Generator, n_num: int, missing_values: bool) -> tuple[np.ndarray, ...]:
    """-> ``[n_num]`` each: log-scale location and spread, shift after flooring, missing rate (0
    without ``missing_values``)."""
    num_mu = rng.uniform(0.0, 5.0, n_num)
    num_sigma = rng.uniform(0.8, 2.0, n_num)
    num_shift = np.where(rng.random(n_num) < 0.2, -rng.integers(1, 4, n_num), 0)
    num_missing = np.where(rng.random(n_num) < 0.8, rng.uniform(0.0, 0.5, n_num), rng.uniform(0.6, 0.8, n_num))
    return num_mu, num_sigma, num_shift, num_missing * missing_values


def _centred(table: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``table`` ``[card + 1, ...]`` less its mean under the value distribution ``p`` ``[card + 1]``."""
    return table - np.tensordot(p, table, axes=(0, 0))


def _platt(score: np.ndarray, p_true: np.ndarray, iterations: int = 50) -> np.ndarray:
    """``(a, c)`` minimising the cross-entropy of ``sigmoid(a * score + c)`` against ``p_true``
    (Newton's method on a convex function of two variables)."""
    a, c = 1.0, 0.0
    design = np.stack([score, np.ones_like(score)], axis=1)
    for _ in range(iterations):
        p = _sigmoid(a * score + c)
        gradient = design.T @ (p - p_true)
        hessian = design.T @ (design * (p * (1 - p))[:, None])
        step = np.linalg.solve(hessian, gradient)
        a, c = a - step[0], c - step[1]
        if np.abs(step).max() < 1e-12:
            break
    return np.array([a, c])
