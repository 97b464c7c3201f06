"""``Spec``: the base of the settings objects a model or ``CTRModule`` takes as one argument."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping, TypeVar, Union

S = TypeVar("S", bound="Spec")


class Spec:
    """Mixed into a frozen dataclass of settings that a config gives as one mapping (the MLP, the
    optimiser, a cross network, ...): ``of`` builds the spec from that mapping, ``to_dict`` gives it
    back as plain values (lists for tuples), as a checkpoint's hyperparameters keep it."""

    @classmethod
    def of(cls: type[S], spec: Union[S, Mapping[str, Any]]) -> S:
        """``spec`` itself, or the spec a config mapping describes."""
        return spec if isinstance(spec, cls) else cls(**spec)

    def to_dict(self) -> dict:
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value
