"""The schema: the one description of a dataset that models are built from.

Every feature value of every sparse field owns one id in a single global id space; field ``i``
owns ids ``[offset, offset + vocab_size)``. Numeric fields are either bucketized (then they are
sparse fields like any other) or kept dense (then they are columns of ``Batch.x_dense`` in the
order of ``Schema.dense_fields``). A multi-valued field (``max_len > 0``: genres, tags) owns an id
block too, one of whose ids is its padding; each row holds up to ``max_len`` of its ids in
``Batch.x_multi``, and the model pools them into one field vector. The embedded fields are laid out
single-valued sparse fields first, then multi-valued ones, then dense ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, NamedTuple, Optional

import torch

Kind = Literal["categorical", "numeric"]


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    vocab_size: int  # ids this field owns (0 for a dense numeric field)
    offset: int  # first global id of this field (0 for a dense numeric field)
    dense: bool = False  # a numeric field kept as a float column instead of bucket ids
    max_len: int = 0  # > 0: a multi-valued field, up to max_len ids per row in Batch.x_multi
    pooling: str = ""  # a multi-valued field's pooling of its ids' vectors: mean, sum or max
    padding_id: int = -1  # a multi-valued field's local id that fills a list's empty places

    @property
    def multi(self) -> bool:
        return self.max_len > 0


@dataclass(frozen=True)
class Schema:
    fields: tuple[Field, ...]

    def __post_init__(self):
        expected = 0
        for f in self.id_fields:
            if f.offset != expected or f.vocab_size < 1:
                raise ValueError(
                    f"field {f.name!r}: offset {f.offset}, vocab {f.vocab_size}; "
                    f"sparse fields must tile the id space from 0 in order"
                )
            expected += f.vocab_size

    @property
    def sparse_fields(self) -> tuple[Field, ...]:
        """Fields of ``Batch.x``, in column order (single-valued)."""
        return tuple(f for f in self.fields if not f.dense and not f.multi)

    @property
    def multi_fields(self) -> tuple[Field, ...]:
        """Multi-valued fields: ``Batch.x_multi`` holds their ``max_len`` columns each, in this order."""
        return tuple(f for f in self.fields if f.multi)

    @property
    def id_fields(self) -> tuple[Field, ...]:
        """Every field that owns ids (sparse, then multi-valued): they tile the id space."""
        return self.sparse_fields + self.multi_fields

    @property
    def multi_width(self) -> int:
        """Columns of ``Batch.x_multi``: the multi-valued fields' ``max_len`` summed."""
        return sum(f.max_len for f in self.multi_fields)

    @property
    def dense_fields(self) -> tuple[Field, ...]:
        """Fields of ``Batch.x_dense``, in column order."""
        return tuple(f for f in self.fields if f.dense)

    @property
    def num_sparse(self) -> int:
        return len(self.sparse_fields)

    @property
    def num_dense(self) -> int:
        return len(self.dense_fields)

    @property
    def num_fields(self) -> int:
        """Fields a model embeds: sparse fields, then multi-valued ones, then dense fields."""
        return len(self.fields)

    @property
    def num_ids(self) -> int:
        """Size of the global id space (rows of the embedding table)."""
        return sum(f.vocab_size for f in self.id_fields)

    @classmethod
    def build(cls, sparse: list[tuple[str, Kind, int]], dense: list[str] = (), multi: list[tuple] = ()) -> "Schema":
        """Lay sparse fields ``(name, kind, vocab_size)`` out in order, then multi-valued ones
        ``(name, vocab_size, max_len, pooling, padding_id)``, then dense numeric ones."""
        fields, offset = [], 0
        for name, kind, vocab in sparse:
            fields.append(Field(name, kind, int(vocab), offset))
            offset += int(vocab)
        for name, vocab, max_len, pooling, padding in multi:
            fields.append(Field(name, "categorical", int(vocab), offset, False, int(max_len), pooling, int(padding)))
            offset += int(vocab)
        fields += [Field(name, "numeric", 0, 0, dense=True) for name in dense]
        return cls(tuple(fields))

    def to_json(self) -> dict:
        # single-valued fields leave the multi-valued keys out: their schema.json reads as before
        single = ("max_len", "pooling", "padding_id")
        fields = [{k: v for k, v in asdict(f).items() if f.multi or k not in single} for f in self.fields]
        return {"fields": fields, "num_ids": self.num_ids}

    @classmethod
    def from_json(cls, data: dict) -> "Schema":
        return cls(tuple(Field(**f) for f in data["fields"]))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "Schema":
        return cls.from_json(json.loads(Path(path).read_text()))


class Batch(NamedTuple):
    """One mini-batch. ``x``: int64 ``[B, S]`` global ids (one per sparse field);
    ``x_dense``: float32 ``[B, D]`` dense numeric fields or ``None``; ``y``: float32 ``[B]`` labels;
    ``x_multi``: int64 ``[B, T]`` global ids of the multi-valued fields (``Schema.multi_width``
    columns, each field's ``max_len`` in turn, its padding id where a list is shorter) or ``None``."""

    x: torch.Tensor
    y: torch.Tensor
    x_dense: Optional[torch.Tensor] = None
    x_multi: Optional[torch.Tensor] = None

    @property
    def size(self) -> int:
        return self.x.shape[0]
