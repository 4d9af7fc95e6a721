"""DDP check for SmartLoaderCallback: ``python _lightning_script.py OUT_DIR``.

Lightning's DDP launcher re-runs this script as rank 1; both ranks then run four fits in the
same gloo process group and each writes ``OUT_DIR/rank<r>.json``:

1. the callback, max_steps steps, a checkpoint at ``resume_step``: ids trained on, steps,
   the sampler Lightning injected;
2. the same run resumed from that checkpoint: the ids trained on after it;
3. ``smartloader.wrap`` returned from train_dataloader: the core's warning (no sharding);
4. the callback with ``use_distributed_sampler=False``: the error.
"""
from __future__ import annotations

import json
import logging
import pathlib
import sys
import warnings

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(pathlib.Path(__file__).parent))

import lightning as L  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

import smartloader  # noqa: E402
from smartloader.integrations.lightning import SmartLoaderCallback  # noqa: E402
from _lightning_common import Classifier, plain_loader  # noqa: E402

MAX_STEPS, RESUME_STEP = 12, 5
warnings.filterwarnings("ignore")
logging.getLogger("lightning").setLevel(logging.ERROR)


def ddp_trainer(out: pathlib.Path, **kw) -> L.Trainer:
    base = dict(accelerator="cpu", devices=2, strategy="ddp", logger=False,
                enable_progress_bar=False, enable_model_summary=False,
                enable_checkpointing=False, num_sanity_val_steps=0, default_root_dir=str(out))
    base.update(kw)
    return L.Trainer(**base)


def main(out: pathlib.Path) -> None:
    result: dict = {"max_steps": MAX_STEPS, "resume_step": RESUME_STEP}
    # 1. the callback under ddp; Lightning injects the DistributedSampler
    model = Classifier(lambda: plain_loader(48), report="loss")
    cb = SmartLoaderCallback(score_resolution=None)
    ckpt = ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=RESUME_STEP,
                           save_top_k=-1, filename="{step}")
    t = ddp_trainer(out, max_steps=MAX_STEPS, callbacks=[cb, ckpt], enable_checkpointing=True)
    t.fit(model)
    rank = t.global_rank
    inner = cb.loader.loader
    result.update(steps=t.global_step, smart_steps=cb.loader.step, seen=model.seen,
                  epochs=model.epochs, sampler=type(inner.sampler).__name__,
                  scoring_forwards=cb.loader.stats.scoring_forwards)

    # 2. resumed from the checkpoint at RESUME_STEP, on both ranks
    resumed = Classifier(lambda: plain_loader(48), report="loss")
    t = ddp_trainer(out, max_steps=MAX_STEPS, callbacks=[SmartLoaderCallback(
        score_resolution=None)])
    t.fit(resumed, ckpt_path=str(out / "ckpt" / f"step={RESUME_STEP}.ckpt"))
    result["resumed_seen"] = resumed.seen

    # 3. smartloader.wrap inside train_dataloader: Lightning cannot shard it
    bare = Classifier(None, report=None)
    bare.loader_fn = lambda: smartloader.wrap(plain_loader(48), bare, total_steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ddp_trainer(out, max_steps=2).fit(bare)
    result["unsharded_warning"] = " ".join(str(w.message) for w in caught
                                           if "whole data set" in str(w.message))

    # 4. the callback, with Lightning told not to shard
    try:
        ddp_trainer(out, max_steps=2, use_distributed_sampler=False,
                    callbacks=[SmartLoaderCallback()]).fit(
            Classifier(lambda: plain_loader(48)))
        result["no_sampler_error"] = ""
    except ValueError as exc:
        result["no_sampler_error"] = str(exc)
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.barrier()  # rank 0 (the launcher) exits only after rank 1 has written


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
