"""What SmartLoader reports after each yielded batch."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepStats:
    """Numbers for one yielded batch (``loader.stats``; also passed to the step callback).

    Times are host wall-clock seconds (``time.perf_counter``); on a GPU they cover launching
    the work, not waiting for it, because the selection path never synchronises. Loss means
    are ``None`` in uniform phases, where nothing is scored.
    """

    step: int                        #: index of this batch over the run, from 0
    epoch: int
    phase: str                       #: name of the phase this step belongs to
    selection: str                   #: its rule: uniform, ranked, ...
    beta: float
    pool_size: int                   #: samples the batch was chosen from
    batch_size: int                  #: samples yielded
    pool_loss_mean: float | None     #: mean scoring loss of the pool
    selected_loss_mean: float | None  #: mean scoring loss of the chosen samples
    pool_time_s: float               #: concatenating the pool
    score_time_s: float              #: the scoring forward (moving, resizing, loss)
    select_time_s: float             #: ranking, drawing, subsetting
    uniform_fallbacks: int           #: steps so far whose scores were NaN/inf (drawn uniformly)
    short_pools: int                 #: end-of-epoch pools smaller than pool_factor batches so far
    resolution: int | None = None    #: training resolution of this batch (px); None = as loaded
    magnitude: float | None = None   #: augmentation magnitude of this step; None = no schedule
    scored_by: str | None = None     #: "forward" (low-res pass) or "scorer" (none); None = unscored
    scoring_forwards: int = 0        #: scoring forwards run so far in the run
    forwards_skipped: int = 0        #: selection steps so far scored without a forward
    noisy_flagged: int | None = None  #: sample ids the noisy guard flags now; None = no guard
    replayed: int = 0                #: samples of this batch drawn from the replay memory
    replay_nbytes: int | None = None  #: replay memory size (bytes); None = no replay section
    scorer_train_time_s: float = 0.0  #: a learning scorer's step on this batch (a proxy's)
    #: graphs torch.compile holds for the model's forward so far (one per input signature:
    #: shape, grad mode, autocast); None = the model is not compiled
    compiled_graphs: int | None = None

    @property
    def overhead_s(self) -> float:
        """Everything SmartLoader added to this step, scoring (and a proxy's training
        step) included."""
        return (self.pool_time_s + self.score_time_s + self.select_time_s
                + self.scorer_train_time_s)


#: the field names, read once (``dataclasses.fields`` walks the class on every call)
_FIELDS = tuple(f.name for f in dataclasses.fields(StepStats))


def materialize(stats: StepStats) -> StepStats:
    """Replace 0-d tensors (kept to avoid host syncs) by Python numbers."""
    changes = {}
    for name in _FIELDS:
        value = getattr(stats, name)
        if isinstance(value, torch.Tensor):
            changes[name] = value.item() if value.dtype.is_floating_point else int(value.item())
    return dataclasses.replace(stats, **changes) if changes else stats
