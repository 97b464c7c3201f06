"""The schema: the one description of a dataset that models are built from.

Every feature value of every sparse field owns one id in a single global id space; field ``i``
owns ids ``[offset, offset + vocab_size)``. Numeric fields are either bucketized (then they are
sparse fields like any other) or kept dense (then they are columns of ``Batch.x_dense`` in the
order of ``Schema.dense_fields``).
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


@dataclass(frozen=True)
class Schema:
    fields: tuple[Field, ...]

    def __post_init__(self):
        expected = 0
        for f in self.sparse_fields:
            if f.offset != expected or f.vocab_size < 1:
                raise ValueError(
                    f"field {f.name!r}: offset {f.offset}, vocab {f.vocab_size}; "
                    f"sparse fields must tile the id space from 0 in order"
                )
            expected += f.vocab_size

    @property
    def sparse_fields(self) -> tuple[Field, ...]:
        """Fields of ``Batch.x``, in column order."""
        return tuple(f for f in self.fields if not f.dense)

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
        """Fields a model embeds: sparse fields, then dense fields."""
        return len(self.fields)

    @property
    def num_ids(self) -> int:
        """Size of the global id space (rows of the embedding table)."""
        return sum(f.vocab_size for f in self.sparse_fields)

    @classmethod
    def build(cls, sparse: list[tuple[str, Kind, int]], dense: list[str] = ()) -> "Schema":
        """Lay sparse fields ``(name, kind, vocab_size)`` out in order, then dense numeric ones."""
        fields, offset = [], 0
        for name, kind, vocab in sparse:
            fields.append(Field(name, kind, int(vocab), offset))
            offset += int(vocab)
        fields += [Field(name, "numeric", 0, 0, dense=True) for name in dense]
        return cls(tuple(fields))

    def to_json(self) -> dict:
        return {"fields": [asdict(f) for f in self.fields], "num_ids": self.num_ids}

    @classmethod
    def from_json(cls, data: dict) -> "Schema":
        return cls(tuple(Field(**f) for f in data["fields"]))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "Schema":
        return cls.from_json(json.loads(Path(path).read_text()))


class Batch(NamedTuple):
    """One mini-batch. ``x``: int64 ``[B, F]`` global ids (one per sparse field);
    ``x_dense``: float32 ``[B, D]`` dense numeric fields or ``None``; ``y``: float32 ``[B]`` labels."""

    x: torch.Tensor
    y: torch.Tensor
    x_dense: Optional[torch.Tensor] = None

    @property
    def size(self) -> int:
        return self.x.shape[0]
