"""SmartTrainer: the real transformers Trainer training tiny BERT / GPT-2 models through
SmartLoader (CPU, random token ids, no downloads)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import (BertConfig, BertForSequenceClassification, GPT2Config,  # noqa: E402
                          GPT2LMHeadModel, TrainingArguments)

import smartloader  # noqa: E402
from smartloader.errors import ConfigError  # noqa: E402
from smartloader.integrations.hf import STATE_FILE, SmartTrainer, per_sample_loss  # noqa: E402
from smartloader.scoring.model import OutputError  # noqa: E402

T = 8  # tokens per sample (every batch padded to the same length)


class TokenRows(torch.utils.data.Dataset):
    """``n`` rows of random token ids; the class is whether the first token is > 50.
    ``lm=True``: labels are the ids themselves, -100 on the padded tail of odd rows."""

    def __init__(self, n=48, lm=False, index=True, labels=True, lengths=None):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 100, (n, T), generator=g)
        self.mask = torch.ones(n, T, dtype=torch.long)
        if lm:
            self.mask[1::2, T - 3:] = 0
        self.lm, self.index, self.labels, self.lengths = lm, index, labels, lengths

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        t = T if self.lengths is None else self.lengths[i]
        row = {"input_ids": self.ids[i, :t], "attention_mask": self.mask[i, :t]}
        if self.labels:
            row["labels"] = (self.ids[i].masked_fill(self.mask[i] == 0, -100) if self.lm
                             else (self.ids[i, 0] > 50).long())
        if self.index:
            row["index"] = i
        return row


def bert(dropout=0.1):
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        vocab_size=100, num_labels=2, max_position_embeddings=16,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout))


def gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=100,
                                      n_positions=16, resid_pdrop=0.0, embd_pdrop=0.0,
                                      attn_pdrop=0.0))


def targs(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to="none",
                use_cpu=True, save_strategy="no", disable_tqdm=True, logging_strategy="no",
                dataloader_pin_memory=False, seed=0)
    base.update(kw)
    return TrainingArguments(**base)


class Recording(SmartTrainer):
    """Records the sample ids of every micro-batch the Trainer trains on, in order."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.trained = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.trained.append(inputs["index"].tolist())
        return super().training_step(model, inputs, num_items_in_batch)


HISTORY = {"pool_factor": 2, "index_key": "index", "scorer": {"type": "history"}}


def reference_losses(model, ds, shift=False):
    """Each sample's loss under the (unchanged) model, computed outside SmartTrainer."""
    model.eval()
    with torch.no_grad():
        out = model(input_ids=ds.ids, attention_mask=ds.mask)
    labels = torch.stack([ds[i]["labels"] for i in range(len(ds))])
    if not shift:
        return torch.nn.functional.cross_entropy(out.logits, labels, reduction="none")
    logits, labels = out.logits[:, :-1], labels[:, 1:]
    rows = []
    for lg, lb in zip(logits, labels):
        keep = lb != -100
        rows.append(torch.nn.functional.cross_entropy(lg[keep], lb[keep]))
    return torch.stack(rows)


# -- training ----------------------------------------------------------------------------
def test_sequence_classification_selects_with_the_live_model(tmp_path):
    seen = []
    tr = SmartTrainer(model=bert(), args=targs(tmp_path, max_steps=10),
                      train_dataset=TokenRows(), smartloader_config={"pool_factor": 3},
                      smartloader_callback=seen.append)
    out = tr.train()
    assert out.global_step == 10 and tr.state.max_steps == 10
    assert tr.smartloader.step == 10 and [s.step for s in seen] == list(range(10))
    assert tr.smartloader.stats.scoring_forwards > 0
    picked = [s for s in seen if s.scored_by == "forward"]
    assert picked and all(s.pool_size == 12 and s.batch_size == 4 for s in picked)
    assert tr.lr_scheduler.last_epoch == 10  # the LR schedule ran over the same 10 steps


@pytest.mark.parametrize("ga", [1, 2])
def test_training_losses_reach_the_history_scorer_matched_to_their_samples(tmp_path, ga):
    # learning_rate 0: the model stays as built, so each id's stored loss must be that
    # sample's own loss; with ga=2 the Trainer fetches both micro-batches before training
    # on the first, so a loss reported against "the last batch" would land on wrong ids.
    ds = TokenRows()
    tr = Recording(model=bert(dropout=0.0), train_dataset=ds, smartloader_config=HISTORY,
                   args=targs(tmp_path, max_steps=6, gradient_accumulation_steps=ga,
                              learning_rate=0.0))
    tr.train()
    assert tr.smartloader.step == 6 * ga and len(tr.trained) == 6 * ga
    table = tr.smartloader.state_dict()["scoring"]["scorer"]
    observed = (table["seen"] >= 0).nonzero().reshape(-1).tolist()
    assert observed == sorted({i for b in tr.trained for i in b})
    ref = reference_losses(tr.model, ds)
    torch.testing.assert_close(table["loss"][observed], ref[observed], atol=1e-5, rtol=1e-5)
    assert tr.smartloader.stats.forwards_skipped > 0  # scored from the table


def test_causal_lm_scores_per_token_averages(tmp_path):
    ds = TokenRows(lm=True)
    tr = Recording(model=gpt2(), train_dataset=ds, smartloader_config=HISTORY,
                   args=targs(tmp_path, max_steps=4, learning_rate=0.0))
    tr.train()
    table = tr.smartloader.state_dict()["scoring"]["scorer"]
    observed = (table["seen"] >= 0).nonzero().reshape(-1)
    assert len(observed) == 16
    ref = reference_losses(tr.model, ds, shift=True)
    torch.testing.assert_close(table["loss"][observed], ref[observed], atol=1e-5, rtol=1e-5)
    # and the per-sample losses, weighted by their tokens, are the model's own mean loss
    b = {k: torch.stack([ds[i][k] for i in range(8)]) for k in ("input_ids", "attention_mask",
                                                                 "labels")}
    with torch.no_grad():
        out = tr.model(**b)
    per = per_sample_loss(out, b["labels"], shift_labels=True)
    count = (b["labels"][:, 1:] != -100).sum(1)
    torch.testing.assert_close((per * count).sum() / count.sum(), out.loss)


def test_num_train_epochs_counts_smartloader_steps(tmp_path):
    # 48 rows / 4 = 12 batches an epoch; 2 epochs; drop_last changes nothing here
    ds = TokenRows()
    cfg = {"pool_factor": 2}
    tr = SmartTrainer(model=bert(), train_dataset=ds, smartloader_config=cfg,
                      args=targs(tmp_path, num_train_epochs=2, gradient_accumulation_steps=2,
                                 dataloader_drop_last=True, save_strategy="epoch"))
    out = tr.train()
    steps = smartloader.steps_for_epochs(12, 2, dict(cfg, input_key="model_inputs",
                                                     target_key="labels",
                                                     score_resolution=None))
    assert steps < 24  # selection epochs yield fewer steps than the loader has batches
    total = -(-steps // 2) * 2
    assert tr.smartloader.step == total and out.global_step == total // 2
    assert tr.state.max_steps == total // 2
    assert 1.9 < tr.state.epoch <= 3.0  # SmartLoader's epochs, not the Trainer's one pass
    # save_strategy="epoch": a checkpoint where SmartLoader's first epoch ended, and at the end
    saved = sorted(int(p.name.split("-")[1]) for p in tmp_path.glob("checkpoint-*"))
    assert len(saved) == 2 and 0 < saved[0] < saved[1] == total // 2


def test_resume_trains_on_exactly_the_uninterrupted_samples(tmp_path):
    def trainer(out_dir, save):
        return Recording(model=bert(), train_dataset=TokenRows(), smartloader_config=HISTORY,
                         args=targs(out_dir, max_steps=10, gradient_accumulation_steps=2,
                                    save_strategy=save, save_steps=4))

    full = trainer(tmp_path / "full", "steps")
    full.train()
    ckpt = tmp_path / "full" / "checkpoint-4"
    assert (ckpt / STATE_FILE.format(rank=0)).is_file()
    resumed = trainer(tmp_path / "resumed", "no")
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert len(full.trained) == 20 and len(resumed.trained) == 12
    assert resumed.trained == full.trained[8:]
    assert resumed.state.global_step == 10 and resumed.smartloader.step == 20
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


# -- errors ------------------------------------------------------------------------------
def test_batches_without_labels_name_target_key(tmp_path):
    tr = SmartTrainer(model=bert(), args=targs(tmp_path, max_steps=2),
                      train_dataset=TokenRows(labels=False))
    with pytest.raises(KeyError, match="target_key 'labels'.*no 'labels' field"):
        tr.train()


def test_missing_index_column_names_index_key(tmp_path):
    tr = SmartTrainer(model=bert(), args=targs(tmp_path, max_steps=2), smartloader_config=HISTORY,
                      train_dataset=TokenRows(index=False))
    with pytest.raises(KeyError, match="index_key 'index'.*with_indices=True"):
        tr.train()


class NoLogits(torch.nn.Module):
    """Returns a loss and hidden states but no logits."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(100, 4)

    def forward(self, input_ids, attention_mask=None, labels=None):
        h = self.emb(input_ids).mean(1)
        return {"loss": h.pow(2).mean(), "hidden": h}


def test_output_without_logits_is_refused_at_the_first_batch(tmp_path):
    tr = SmartTrainer(model=NoLogits(), args=targs(tmp_path, max_steps=2),
                      train_dataset=TokenRows())
    with pytest.raises(OutputError, match="no .logits.*smartloader_loss_fn"):
        tr.train()


def test_per_batch_padding_is_refused_naming_max_length(tmp_path):
    lengths = [T if (i // 4) % 2 == 0 else T - 2 for i in range(48)]
    tr = SmartTrainer(model=bert(), args=targs(tmp_path, max_steps=4),
                      train_dataset=TokenRows(lengths=lengths),
                      data_collator=_pad_each_batch)
    with pytest.raises(ValueError, match="padding='max_length'"):
        tr.train()


def _pad_each_batch(rows):
    """A collator padding each batch to its own longest row (what dynamic padding does)."""
    n = max(len(r["input_ids"]) for r in rows)
    pad = lambda v: torch.nn.functional.pad(v, (0, n - len(v)))  # noqa: E731
    return {"input_ids": torch.stack([pad(r["input_ids"]) for r in rows]),
            "attention_mask": torch.stack([pad(r["attention_mask"]) for r in rows]),
            "labels": torch.stack([r["labels"] for r in rows])}


@pytest.mark.parametrize("cfg, key", [
    ({"total_steps": 100}, "total_steps"),
    ({"input_key": "input_ids"}, "input_key"),
    ({"score_resolution": 96}, "score_resolution"),
    ({"replay": {"capacity": 64}}, "replay"),
    ({"scorer": {"type": "proxy_model"}}, "scorer"),
])
def test_config_it_cannot_honour_is_refused_at_construction(tmp_path, cfg, key):
    with pytest.raises(ConfigError, match=f"smartloader_config.{key}"):
        SmartTrainer(model=bert(), args=targs(tmp_path, max_steps=2),
                     train_dataset=TokenRows(), smartloader_config=cfg)


def test_fractional_epochs_are_refused(tmp_path):
    tr = SmartTrainer(model=bert(), args=targs(tmp_path, num_train_epochs=1.5),
                      train_dataset=TokenRows())
    with pytest.raises(ValueError, match="num_train_epochs=1.5"):
        tr.train()


def test_resume_refuses_ignore_data_skip_and_foreign_checkpoints(tmp_path):
    first = SmartTrainer(model=bert(), train_dataset=TokenRows(),
                         args=targs(tmp_path, max_steps=2, save_strategy="steps",
                                    save_steps=2))
    first.train()
    ckpt = tmp_path / "checkpoint-2"
    again = SmartTrainer(model=bert(), train_dataset=TokenRows(),
                         args=targs(tmp_path, max_steps=4, ignore_data_skip=True))
    with pytest.raises(ValueError, match="ignore_data_skip=True"):
        again.train(resume_from_checkpoint=str(ckpt))
    (ckpt / STATE_FILE.format(rank=0)).unlink()
    again = SmartTrainer(model=bert(), train_dataset=TokenRows(),
                         args=targs(tmp_path, max_steps=4))
    with pytest.raises(FileNotFoundError, match="no smartloader_state_rank0.pt"):
        again.train(resume_from_checkpoint=True)


@pytest.mark.parametrize("scorer, forwards", [
    ({"type": "learnability", "reference": "ema"}, True),
    ({"type": "learnability", "reference": "best", "learner": "history"}, False),
])
def test_learnability_scorers_run_on_keyword_inputs(tmp_path, scorer, forwards):
    tr = SmartTrainer(model=bert(), args=targs(tmp_path, max_steps=6), train_dataset=TokenRows(),
                      smartloader_config={"pool_factor": 2, "index_key": "index",
                                          "scorer": scorer})
    tr.train()
    stats = tr.smartloader.stats
    assert (stats.scoring_forwards > 0) is forwards
    assert stats.scoring_forwards + stats.forwards_skipped == 5  # every selection step scored


def test_the_yaml_in_the_docs_is_a_config_smarttrainer_takes(tmp_path):
    import pathlib
    import re

    import yaml
    page = pathlib.Path(__file__).resolve().parents[2] / "docs" / "huggingface.md"
    found = re.findall(r"^```yaml\n(.*?)^```", page.read_text(), re.S | re.M)
    assert found
    for text in found:
        tr = SmartTrainer(model=bert(), args=targs(tmp_path, max_steps=2),
                          train_dataset=TokenRows(), smartloader_config=yaml.safe_load(text))
        tr.train()
        table = tr.smartloader.state_dict()["scoring"]["scorer"]
        assert int((table["seen"] >= 0).sum()) == 8  # 2 steps of 4 trained samples
