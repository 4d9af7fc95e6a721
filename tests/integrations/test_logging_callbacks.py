"""The logging callbacks against the real loggers: TensorBoard event files read back with
EventAccumulator, a W&B offline run read back from its ``.wandb`` file, an MLflow file store
read back with ``MlflowClient``, and tqdm's output in a stream. Each run is a real SmartLoader
run whose stats are collected by a last callback in the same list."""
from __future__ import annotations

import dataclasses
import glob
import io
import os
import pathlib
import re
import struct
import subprocess
import sys

import pytest
from torch.utils.data import DataLoader

import smartloader
from helpers import PlantedDataset, scorer_model
from smartloader.integrations.logging import (MetricsCallback, ProgressCallback,
                                              TensorBoardCallback, logged_keys, progress_note,
                                              stats_dict)

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = 12
CFG = {"total_steps": STEPS, "pool_factor": 2, "score_resolution": None, "phases": [
    {"name": "warmup", "steps": 3, "selection": "uniform"},
    {"name": "select", "selection": "ranked", "beta": 1.0},
    {"name": "cooldown", "steps": 3, "selection": "uniform"}]}


def _run(callbacks, steps=STEPS):
    """A SmartLoader run of ``steps`` steps with ``callbacks`` then a collector; its stats."""
    seen: list[smartloader.StepStats] = []
    loader = smartloader.wrap(DataLoader(PlantedDataset(n=160), batch_size=10),
                              scorer_model(), CFG, callback=[*callbacks, seen.append])
    while len(seen) < steps:
        for _ in loader:
            if len(seen) == steps:
                break
    assert [s.step for s in seen] == list(range(steps))
    return loader, seen


def _phases(seen):
    return [s.phase for s in seen]


# -- stats_dict ---------------------------------------------------------------------------

def test_stats_dict_has_every_number_and_drops_none():
    _, seen = _run([], steps=5)
    uniform, selected = seen[0], seen[4]
    assert (uniform.phase, selected.phase) == ("warmup", "select")
    d = stats_dict(selected)
    numbers = {f"smartloader/{f.name}": getattr(selected, f.name)
               for f in dataclasses.fields(selected)
               if isinstance(getattr(selected, f.name), (int, float)) and f.name != "step"}
    assert d == {**numbers, "smartloader/overhead_s": selected.overhead_s,
                 "smartloader/selecting": 1}
    assert all(type(v) in (int, float) for v in d.values())
    u = stats_dict(uniform, prefix="sl.")
    assert u["sl.selecting"] == 0 and u["sl.batch_size"] == 10
    # None in a uniform phase: the loss means are left out, not logged as 0 or NaN
    assert uniform.pool_loss_mean is None and "sl.pool_loss_mean" not in u
    assert set(u) < set(logged_keys("sl.")) and set(d) <= set(logged_keys())


def test_stats_dict_text_adds_the_strings():
    _, seen = _run([], steps=4)
    d = stats_dict(seen[3], text=True)
    assert d["smartloader/phase"] == "select" and d["smartloader/selection"] == "ranked"
    assert d["smartloader/scored_by"] == seen[3].scored_by == "forward"
    assert "smartloader/scored_by" not in stats_dict(seen[0], text=True)  # None: unscored
    assert "smartloader/phase" not in stats_dict(seen[3])


def test_every_field_is_logged_or_is_the_step():
    names = {f.name for f in dataclasses.fields(smartloader.StepStats)}
    logged = {k[len("smartloader/"):] for k in logged_keys(text=True)}
    assert logged - names == {"overhead_s", "selecting"}
    assert names - logged == {"step"}


def test_docs_table_lists_exactly_the_logged_keys():
    page = (ROOT / "docs" / "logging.md").read_text()
    table = re.findall(r"^\| `smartloader/(\w+)` \|", page, re.M)
    assert table == [k[len("smartloader/"):] for k in logged_keys(text=True)]


# -- TensorBoard --------------------------------------------------------------------------

def _events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_scalars_equal_the_runs_stats(tmp_path):
    pytest.importorskip("tensorboard")
    logged = []
    tb = TensorBoardCallback(tmp_path / "tb")
    _, seen = _run([tb, MetricsCallback(lambda m, step: logged.append((step, m)))])
    tb.close()
    acc = _events(tmp_path / "tb")
    want = [(s.step, stats_dict(s)) for s in seen]
    assert logged == want  # the dict callback of the same run got the same numbers
    tags = set(acc.Tags()["scalars"])
    assert tags == {k for _, d in want for k in d}
    for tag in tags:
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        expect = [(step, pytest.approx(d[tag], rel=1e-6, abs=1e-12))
                  for step, d in want if tag in d]
        assert got == expect, tag
    # the loss means exist only at the selection steps
    assert [e.step for e in acc.Scalars("smartloader/pool_loss_mean")] == [
        s.step for s in seen if s.phase == "select"]
    # the phase name, as text, at the first step of each phase
    texts = [(e.step, e.tensor_proto.string_val[0].decode())
             for e in acc.Tensors("smartloader/phase/text_summary")]
    assert texts == [(0, "warmup (uniform)"), (3, "select (ranked)"),
                     (_phases(seen).index("cooldown"), "cooldown (uniform)")]


def test_tensorboard_every_and_a_given_writer(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(str(tmp_path / "tb"))
    tb = TensorBoardCallback(writer, every=5, prefix="data/")
    _run([tb])
    tb.close()                               # a given writer is only flushed...
    writer.add_scalar("mine", 1.0, 99)       # ...and stays usable
    writer.close()
    acc = _events(tmp_path / "tb")
    assert [e.step for e in acc.Scalars("data/batch_size")] == [0, 5, 10]
    assert [e.step for e in acc.Scalars("mine")] == [99]


class ListWriter:
    """A writer of one's own (not torch's SummaryWriter): any add_scalar/add_text/flush."""

    def __init__(self):
        self.scalars, self.texts, self.flushes = [], [], 0

    def add_scalar(self, tag, value, step):
        self.scalars.append((step, tag, value))

    def add_text(self, tag, text, step):
        self.texts.append((step, tag, text))

    def flush(self):
        self.flushes += 1


def test_tensorboard_other_writers_get_add_scalar_per_tag():
    writer = ListWriter()
    tb = TensorBoardCallback(writer, every=4)
    _, seen = _run([tb])
    assert writer.scalars == [(s.step, tag, value) for s in seen[::4]
                              for tag, value in stats_dict(s).items()]
    assert [(step, text) for step, _, text in writer.texts] == [
        (0, "warmup (uniform)"), (3, "select (ranked)"),
        (_phases(seen).index("cooldown"), "cooldown (uniform)")]
    with tb:
        pass
    assert writer.flushes == 1  # closing flushes a writer it did not create


def test_tensorboard_rejects_what_is_not_a_dir_or_writer():
    with pytest.raises(TypeError, match="writer_or_log_dir must be a log directory or a "
                                        "SummaryWriter, got int"):
        TensorBoardCallback(3)


# -- every --------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda every: TensorBoardCallback(object(), every=every),
    lambda every: MetricsCallback(print, every=every),
    lambda every: ProgressCallback(every=every)], ids=["tensorboard", "metrics", "progress"])
def test_every_is_validated(make):
    with pytest.raises(ValueError, match=r"every must be >= 1 .* got 0; every=1 logs every "
                                         r"step"):
        make(0)
    with pytest.raises(TypeError, match=r"every must be an int >= 1 .* got 2\.0 \(float\)"):
        make(2.0)
    with pytest.raises(TypeError, match=r"every must be an int >= 1 .* got True \(bool\)"):
        make(True)


def test_metrics_callback_every_step_kw_and_bad_arguments():
    calls = []
    _, seen = _run([MetricsCallback(lambda m, it: calls.append((it, m)), every=4,
                                    step_kw="it", prefix="")])
    assert [it for it, _ in calls] == [0, 4, 8]
    assert calls[1][1] == stats_dict(seen[4], prefix="")
    bare = []
    _, seen = _run([MetricsCallback(bare.append, every=6, step_kw=None)])
    assert bare == [stats_dict(s) for s in seen[::6]]
    with pytest.raises(TypeError, match="log_fn must be callable .* got str"):
        MetricsCallback("wandb.log")
    with pytest.raises(TypeError, match="step_kw must be a keyword name .* got 'the step'"):
        MetricsCallback(print, step_kw="the step")
    with pytest.raises(TypeError, match="prefix must be a str"):
        MetricsCallback(print, prefix=None)


# -- W&B ----------------------------------------------------------------------------------

def _wandb_records(path):
    """The records of a ``.wandb`` file: W&B's transaction log is LevelDB's log format
    (32 KiB blocks; records of checksum, length, type, payload) after a 7-byte header, and
    each record is a ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2 as pb
    data = pathlib.Path(path).read_bytes()
    assert data[:4] == b":W&B"
    block, pos, part, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        part += data[pos:pos + n]
        pos += n
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE/LAST
            rec = pb.Record()
            rec.ParseFromString(part)
            out.append(rec)
            part = b""
    return out


def test_wandb_offline_history_equals_the_runs_stats(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    import json
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = wandb.init(mode="offline", dir=str(tmp_path), project="smartloader-test",
                     settings=wandb.Settings(console="off", save_code=False))
    try:
        _, seen = _run([MetricsCallback(wandb.log, every=2, text=True)])
        # W&B commits a step's row when a later step (or finish) arrives: the last is pending
        assert run.summary["_step"] == seen[-4].step
    finally:
        run.finish()
        wandb.teardown()
    files = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1
    history, summary = [], {}
    for rec in _wandb_records(files[0]):
        if rec.WhichOneof("record_type") == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                            for i in rec.summary.update})
        if rec.WhichOneof("record_type") == "history":
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                   for i in rec.history.item}
            history.append({k: v for k, v in row.items() if not k.startswith("_")})
            assert row["_step"] == rec.history.step.num
    want = [stats_dict(s, text=True) for s in seen[::2]]
    assert len(history) == len(want) == STEPS // 2
    for got, expect in zip(history, want):
        assert got == {k: pytest.approx(v, rel=1e-12) if isinstance(v, float) else v
                       for k, v in expect.items()}
    # the run's summary, as written in the file: the last logged step's values
    assert summary["_step"] == seen[-2].step
    assert {k: summary[k] for k in want[-1]} == want[-1]
    assert summary["smartloader/phase"] == "cooldown"


# -- MLflow -------------------------------------------------------------------------------

def test_mlflow_metric_history_equals_the_runs_stats(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    # MLflow 3 keeps the file store for local use behind this switch (no server, no SQL)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(f"file://{tmp_path}/mlruns")
    try:
        with mlflow.start_run() as run:
            _, seen = _run([MetricsCallback(mlflow.log_metrics, every=3)])
        client = mlflow.tracking.MlflowClient()
        want = [(s.step, stats_dict(s)) for s in seen[::3]]
        keys = {k for _, d in want for k in d}
        assert set(client.get_run(run.info.run_id).data.metrics) == keys
        for key in keys:
            got = [(m.step, m.value)
                   for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(got) == [(step, pytest.approx(d[key], rel=1e-12))
                                   for step, d in want if key in d], key
    finally:
        mlflow.set_tracking_uri("")


# -- the progress bar ---------------------------------------------------------------------

def _bar_lines(text):
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


def test_progress_bar_counts_to_the_total_and_shows_the_numbers():
    out = io.StringIO()
    bar = ProgressCallback(total=STEPS, file=out, mininterval=0, desc="train")
    _, seen = _run([bar])
    lines = _bar_lines(out.getvalue())
    assert lines[-1].startswith("train: 100%") and f"{STEPS}/{STEPS}" in lines[-1]
    assert progress_note(seen[-1]) in lines[-1]  # closed at the last step: its numbers
    assert re.search(r"phase select \| loss pool \d+\.\d{3} chosen \d+\.\d{3} \| "
                     r"\+\d+\.\d ms", out.getvalue())
    assert bar._bar.n == STEPS and bar._bar.total == STEPS
    before = out.getvalue()
    bar(dataclasses.replace(seen[-1], step=STEPS))  # past the total: closed, nothing drawn
    assert out.getvalue() == before


def test_progress_bind_takes_the_loaders_total_and_resumes_part_way():
    out = io.StringIO()
    bar = ProgressCallback(file=out, mininterval=0)
    loader = smartloader.wrap(DataLoader(PlantedDataset(n=160), batch_size=10),
                              scorer_model(), CFG, callback=bar)
    assert bar.bind(loader) is bar and bar.total == STEPS
    _, seen = _run([], steps=STEPS)
    for s in seen[5:]:  # a resumed run: the bar starts at its first step
        bar(s)
    first = _bar_lines(out.getvalue())[0]  # drawn when built: 5 of 12 steps done
    assert first.startswith("smartloader:  42%") and f" 5/{STEPS} " in first
    assert f"{STEPS}/{STEPS}" in _bar_lines(out.getvalue())[-1]
    with pytest.raises(TypeError, match="bind: expected the SmartLoader"):
        ProgressCallback().bind(object())


def test_progress_disabled_writes_nothing_and_bad_total_is_refused():
    out = io.StringIO()
    _run([ProgressCallback(total=STEPS, file=out, disable=True)])
    assert out.getvalue() == ""
    with pytest.raises(ValueError, match="total must be the run's steps, an int >= 1, or "
                                         "None, got 0"):
        ProgressCallback(total=0)


# -- callback lists (SmartLoader's own) ----------------------------------------------------

def test_callback_list_is_called_in_order_and_a_non_callable_is_refused():
    order = []
    _run([lambda s: order.append(("a", s.step)), lambda s: order.append(("b", s.step))],
         steps=3)
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    with pytest.raises(TypeError, match=r"callback\[1\]: must be callable .* got int"):
        smartloader.wrap(DataLoader(PlantedDataset(n=20), batch_size=10), scorer_model(),
                         CFG, callback=[print, 3])


# -- import smartloader needs none of the loggers ------------------------------------------

def test_import_needs_none_of_the_loggers(tmp_path):
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorboard", "tqdm", "wandb", "mlflow"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import smartloader
from smartloader.integrations.logging import MetricsCallback, TensorBoardCallback, stats_dict
MetricsCallback(print)
try:
    TensorBoardCallback("tb")
except ImportError as e:
    print(e)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        raise
    assert proc.returncode == 0, err[-2000:]
    assert "TensorBoardCallback needs the tensorboard package: pip install tensorboard" in out


# -- the example --------------------------------------------------------------------------

@pytest.mark.slow
def test_logging_example_runs_and_reads_its_event_file_back(tmp_path):
    pytest.importorskip("tensorboard")
    flags = [f for mod, f in (("wandb", "--wandb"), ("mlflow", "--mlflow"))
             if _installed(mod)]
    if "--mlflow" in flags:
        flags.append(str(tmp_path / "mlruns"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "logging_example.py"),
                             "--steps", "20", "--logdir", str(tmp_path / "tb"), *flags],
                            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        raise
    assert proc.returncode == 0, err[-3000:]
    m = re.search(r"(\d+) scalar tags; smartloader/selected_loss_mean at (\d+) steps "
                  r"\((\d+)\.\.(\d+)\)", out)
    assert m, out
    assert int(m.group(1)) >= 17 and int(m.group(4)) < 20
    assert "train: 100%" in err and "20/20" in err  # the progress bar, on stderr
    if "--mlflow" in flags:
        assert (next((tmp_path / "mlruns").glob("*/*/metrics/smartloader")) / "epoch").exists()
    if "--wandb" in flags:
        assert len(glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))) == 1


def _installed(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None
