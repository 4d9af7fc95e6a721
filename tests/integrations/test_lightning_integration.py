"""SmartLoaderCallback with the real ``lightning`` package: selection inside ``Trainer.fit``,
per-sample losses matched to their samples, exact resume from Lightning checkpoints, DDP
(two gloo processes) sharded by Lightning's own DistributedSampler, and the errors for
settings that would lose SmartLoader."""
from __future__ import annotations

import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import warnings

import pytest
import torch

L = pytest.importorskip("lightning")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler  # noqa: E402

import smartloader  # noqa: E402
from smartloader.integrations.lightning import SmartLoaderCallback  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _lightning_common import Classifier, IndexedVectors, plain_loader, trainer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers"
                                                  "|litlogger|GPU available).*")
        yield


def seeded_loader(n: int = 64, batch_size: int = 4) -> DataLoader:
    """Shuffled, and the same order for the same epoch in every run (what exact resume of
    any loader needs; a DistributedSampler of one replica gives it in one process)."""
    ds = IndexedVectors(n)
    return DataLoader(ds, batch_size=batch_size,
                      sampler=DistributedSampler(ds, num_replicas=1, rank=0, seed=0))


def test_fit_selects_and_reports_losses_to_the_right_samples(tmp_path):
    seen_stats = []
    cb = SmartLoaderCallback({"scorer": {"type": "history"}, "index_key": 2},
                             callback=seen_stats.append)
    model = Classifier(seeded_loader, report="index")
    t = trainer(tmp_path, max_steps=30, callbacks=[cb], limit_val_batches=1)
    t.fit(model, val_dataloaders=plain_loader(8, shuffle=False))
    smart = cb.loader
    assert t.global_step == 30 and smart.step == 30 and len(model.seen) == 30
    # total_steps came from max_steps: warm-up, selection and cool-down all happened
    assert smart.config.total_steps == 30
    assert {s.phase for s in seen_stats} == {"warmup", "select", "cooldown"}
    assert smart.stats.forwards_skipped > 0           # pools scored by the history table
    # every epoch Lightning ran had exactly SmartLoader's batches of that epoch
    assert model.epochs == [s.epoch for s in seen_stats]
    # selection epochs yield half the wrapped batches (16 per epoch, pool_factor 2)
    per_epoch = [model.epochs.count(e) for e in sorted(set(model.epochs))]
    assert per_epoch == [9, 8, 8, 5]  # 2 warm-up + 14 / 2; 16 / 2; 16 / 2; max_steps
    # validation ran at the end of every complete epoch: Lightning's check counts batches
    assert model.validated == [0, 1, 2]
    # each reported value (index + 1) landed on the sample it belongs to, and only there
    scorer = smart.state_dict()["scoring"]["scorer"]
    trained = sorted({i for ids in model.seen for i in ids})
    assert torch.equal(scorer["loss"][trained], torch.tensor(trained, dtype=torch.float32) + 1)
    untrained = sorted(set(range(64)) - set(trained))
    assert untrained and bool((scorer["seen"][untrained] == -1).all())


def test_history_scorer_without_reported_losses_is_an_error(tmp_path):
    cb = SmartLoaderCallback({"scorer": {"type": "history"}, "index_key": 2})
    t = trainer(tmp_path, max_steps=3, callbacks=[cb])
    with pytest.raises(KeyError, match=r"training_step returned a dict with keys \['loss'\].*'losses'"):
        t.fit(Classifier(seeded_loader, report=None))


def _run(tmp, name: str, ckpt_path=None, every=(), **kw):
    """A fit with the callback; checkpoints every ``every[i]`` steps, or at epoch ends."""
    model = Classifier(seeded_loader, report="loss")
    cb = SmartLoaderCallback(score_resolution=None)
    when = [{"every_n_train_steps": n} for n in every] or [
        {"every_n_epochs": 1, "save_on_train_epoch_end": True}]
    ckpts = [ModelCheckpoint(dirpath=tmp / name, save_top_k=-1, filename="{step}", **w)
             for w in when]
    t = trainer(tmp, callbacks=[cb, *ckpts], enable_checkpointing=True, **kw)
    t.fit(model, ckpt_path=ckpt_path)
    return model, cb, t


def test_resume_from_a_lightning_checkpoint_is_exact(tmp_path, caplog):
    # epoch 0: 2 warm-up steps, then 14 wrapped batches in pools of 2: its last batch is step 9
    epoch_end, mid = 9, 13
    full, cb, t = _run(tmp_path, "full", every=(epoch_end, mid), max_steps=40)
    assert t.global_step == 40 and cb.loader.stats.scoring_forwards > 0
    assert full.epochs.index(1) == epoch_end
    for k in (mid, epoch_end):                        # mid-epoch, and the epoch's last batch
        caplog.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            resumed, rcb, rt = _run(tmp_path, f"from{k}", max_steps=40,
                                    ckpt_path=tmp_path / "full" / f"step={k}.ckpt")
        assert rt.global_step == 40
        assert resumed.seen == full.seen[k:], f"resumed from step {k}"
        assert rcb.loader.state_dict()["step"] == 40
        # Lightning's "dataloader is not resumable" does not apply and is not shown;
        # SmartLoader resumed its saved position (no "saved position is dropped")
        assert not [w for w in caught if "not resumable" in str(w.message)]
        assert not [r for r in caplog.records
                    if r.name == "smartloader" and r.levelno >= logging.WARNING]


def test_epoch_based_resume_from_an_epoch_end_checkpoint(tmp_path):
    # max_epochs and a checkpoint at the end of an epoch: Lightning does not restore loader
    # states there (its fit loop is not "restarting"); the callback's own entry does
    full, cb, _ = _run(tmp_path, "full", max_epochs=3)
    # max_epochs became total_epochs: total_steps is what 3 epochs of this loader yield
    assert cb.loader.config.total_steps == smartloader.steps_for_epochs(seeded_loader(), 3)
    assert cb.loader.epoch == 3
    k = full.epochs.index(2)
    resumed, rcb, _ = _run(tmp_path, "resumed", max_epochs=3,
                           ckpt_path=tmp_path / "full" / f"step={k}.ckpt")
    assert resumed.seen == full.seen[k:]
    a, b = rcb.loader.state_dict(), cb.loader.state_dict()
    assert (a["step"], a["epoch"]) == (b["step"], b["epoch"]) == (len(full.seen), 3)


def test_wrapping_in_train_dataloader_and_the_callback_is_an_error(tmp_path):
    model = Classifier(lambda: smartloader.wrap(plain_loader(), model, total_steps=4))
    t = trainer(tmp_path, max_steps=2, callbacks=[SmartLoaderCallback()])
    with pytest.raises(TypeError, match="return the DataLoader from train_dataloader"):
        t.fit(model)


@pytest.mark.parametrize("setting, value", [("limit_train_batches", 5),
                                            ("reload_dataloaders_every_n_epochs", 1),
                                            ("overfit_batches", 2)])
def test_settings_that_would_lose_smartloader_are_errors(tmp_path, setting, value):
    t = trainer(tmp_path, max_steps=2, callbacks=[SmartLoaderCallback()], **{setting: value})
    with pytest.raises(ValueError, match=f"{setting}={value}"):
        t.fit(Classifier(seeded_loader))


def test_set_epoch_abandons_an_unfinished_epoch():
    # the core behaviour the callback relies on when an epoch ends early: after an epoch
    # left unfinished, set_epoch(next) makes len() and state_dict() describe the new one
    ds = IndexedVectors(32)
    model = torch.nn.Linear(8, 4)
    sl = smartloader.wrap(DataLoader(ds, batch_size=4), model, total_steps=100,
                          phases=[{"name": "u", "selection": "uniform"}])
    it = iter(sl)
    next(it), next(it)
    sl.set_epoch(1)
    assert len(sl) == 8
    state = sl.state_dict()
    assert (state["epoch"], state["consumed"], state["epoch_start_step"]) == (1, 0, 2)
    with pytest.raises(RuntimeError, match="superseded"):
        next(it)
    assert len(list(sl)) == 8 and sl.epoch == 2


def test_ddp_two_gloo_processes(tmp_path):
    script = pathlib.Path(__file__).with_name("_lightning_script.py")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
               PL_DISABLE_FORK="1")
    env.pop("LOCAL_RANK", None)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=str(ROOT),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the DDP script did not finish in 240 s")
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    r0, r1 = ranks
    # equal steps per rank, Lightning's DistributedSampler under SmartLoader
    assert r0["steps"] == r1["steps"] == r0["max_steps"]
    assert r0["smart_steps"] == r1["smart_steps"] == r0["max_steps"]
    assert r0["sampler"] == r1["sampler"] == "DistributedSampler"
    assert r0["scoring_forwards"] > 0 and r1["scoring_forwards"] > 0
    # disjoint shards: per epoch, no sample id trained on by both ranks
    for e in set(r0["epochs"]):
        ids0 = {i for ids, ep in zip(r0["seen"], r0["epochs"]) if ep == e for i in ids}
        ids1 = {i for ids, ep in zip(r1["seen"], r1["epochs"]) if ep == e for i in ids}
        assert ids0 and ids1 and not ids0 & ids1, f"epoch {e}"
    # resume from a checkpoint under DDP: each rank continues with its own batches
    for r in ranks:
        assert r["resumed_seen"] == r["seen"][r["resume_step"]:]
    # wrap() in train_dataloader under ddp: the core warns on every rank, naming the fix
    for r in ranks:
        assert "use_distributed_sampler" in r["unsharded_warning"]
        assert "SmartLoaderCallback" in r["unsharded_warning"]
    # the callback with use_distributed_sampler=False: an error naming the setting
    for r in ranks:
        assert "use_distributed_sampler=True" in r["no_sampler_error"]
