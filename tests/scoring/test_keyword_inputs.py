"""An input field that is a mapping of tensors is scored as ``model(**inputs)``, and
``report_losses(batch=)`` attributes losses to a named yielded batch."""
import pytest
import torch

import smartloader
from smartloader.errors import ConfigError


class TokenModel(torch.nn.Module):
    """Keyword inputs, like a Hugging Face model: mean of the unmasked token embeddings."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask):
        m = attention_mask.unsqueeze(-1).float()
        return self.head((self.emb(input_ids) * m).sum(1) / m.sum(1).clamp(min=1))


def batches(n=6, bs=4, t=5):
    """``{"inputs": {input_ids, attention_mask}, "label", "index"}``; input_ids' first column
    is the sample's index, so rows can be checked against their ids."""
    out = []
    for b in range(n):
        idx = torch.arange(b * bs, (b + 1) * bs)
        ids = torch.randint(1, 50, (bs, t), generator=torch.Generator().manual_seed(b))
        ids[:, 0] = idx
        out.append({"inputs": {"input_ids": ids, "attention_mask": torch.ones(bs, t).long()},
                    "label": idx % 3, "index": idx})
    return out


CFG = {"input_key": "inputs", "target_key": "label", "index_key": "index",
       "score_resolution": None, "pool_factor": 3,
       "phases": [{"name": "select", "fraction": 1.0, "selection": "ranked", "beta": 1.0}]}


def test_mapping_inputs_are_scored_as_keyword_arguments_and_stay_aligned():
    model = TokenModel()
    loader = smartloader.wrap(batches(), model, CFG, total_steps=2)
    got = list(loader)
    assert len(got) == 2 and loader.stats.scoring_forwards == 2
    for b in got:
        assert b["inputs"]["input_ids"].shape == (4, 5)
        assert torch.equal(b["inputs"]["input_ids"][:, 0], b["index"])
        assert torch.equal(b["label"], b["index"] % 3)


def test_a_resolution_on_mapping_inputs_names_score_resolution():
    with pytest.raises(ConfigError, match="score_resolution: 4 resizes NCHW image batches"):
        list(smartloader.wrap(batches(), TokenModel(), dict(CFG, score_resolution=4),
                              total_steps=2))


def test_mapping_values_must_be_tensors():
    bad = [dict(b, inputs=dict(b["inputs"], note=["x"] * 4)) for b in batches()]
    with pytest.raises(TypeError, match="'note' is list"):
        list(smartloader.wrap(bad, TokenModel(), CFG, total_steps=2))


def test_report_losses_names_the_batch_it_belongs_to():
    cfg = dict(CFG, scorer={"type": "history"})
    loader = smartloader.wrap(batches(), TokenModel(), cfg, total_steps=2)
    it = iter(loader)
    first, second = next(it), next(it)   # fetched ahead, as gradient accumulation does
    loader.report_losses(first["index"].float(), batch=first)
    loader.report_losses(second["index"].float(), batch=second)
    table = loader.state_dict()["scoring"]["scorer"]
    for b in (first, second):
        assert torch.equal(table["loss"][b["index"]], b["index"].float())
    assert int((table["seen"] >= 0).sum()) == 8


def test_report_losses_batch_is_refused_with_replay():
    x = [(torch.randn(4, 3), torch.arange(4) % 2) for _ in range(4)]
    model = torch.nn.Linear(3, 2)
    loader = smartloader.wrap(x, model, {"replay": {"capacity": 8}, "score_resolution": None},
                              total_steps=4)
    batch = next(iter(loader))
    with pytest.raises(ValueError, match="replay"):
        loader.report_losses(torch.zeros(4), batch=batch)
