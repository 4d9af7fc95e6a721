"""The transform stage: the post-selection batch transform (MixUp / CutMix), if any.

It runs on the batch after it was chosen, so the pool was scored on clean samples. Its
randomness comes from its own CPU ``torch.Generator``, saved in state.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from smartloader.augment.mixing import BATCH_TRANSFORM, make_batch_transform
from smartloader.common import batch as B
from smartloader.common.spec import Values
from smartloader.common.state import StateError, check_generator_state, strict_keys

__all__ = ["TransformStage"]


class TransformStage:
    """``batch_transform:`` applied to every yielded batch (a no-op without one).

    Args:
        spec: the parsed ``batch_transform`` section (``Config.strategies``; a plain mapping
            as written is read too), or None.
        seed: seeds the stage's generator.
    """

    def __init__(self, spec: Mapping[str, Any] | None, seed: int) -> None:
        if spec is not None and not isinstance(spec, Values):
            spec = BATCH_TRANSFORM.parse(spec, "batch_transform")
        self.transform = None if spec is None else make_batch_transform(spec)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch: Any, keys: tuple) -> Any:
        if self.transform is None:
            return batch
        ik, tk = keys
        x, y = self.transform(B.get_field(batch, ik), B.get_field(batch, tk), self.generator)
        return B.replace_field(B.replace_field(batch, ik, x), tk, y)

    def state_dict(self) -> dict[str, Any]:
        # only a transform draws from the generator (None keeps plain states tensor-free)
        return {"generator": None if self.transform is None else self.generator.get_state()}

    def check_state(self, state: Any, path: str = "state.transform") -> None:
        """Raise :class:`~smartloader.errors.StateError` unless :meth:`load_state_dict`
        would accept ``state``; changes nothing."""
        strict_keys(self, state, {"generator"}, path)
        gen = state["generator"]
        if (gen is None) != (self.transform is None):
            raise StateError(f"{path}.generator: saved with a different batch_transform "
                             f"config (saved {'none' if gen is None else 'a generator'}, this "
                             f"loader has {'no transform' if self.transform is None else 'one'})")
        if gen is not None:
            check_generator_state(gen, f"{path}.generator", self.generator.device)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        if state["generator"] is not None:
            self.generator.set_state(state["generator"].cpu())
