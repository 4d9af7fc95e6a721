"""docs/replay.md cannot drift: every YAML block parses, the size example is computed."""
import re
from pathlib import Path

import torch
import yaml

import smartloader

from smartloader.replay import ReplayMemory, capacity_from, parse_replay

DOC = Path(__file__).resolve().parents[2] / "docs" / "replay.md"


def yaml_blocks():
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)


def test_every_yaml_block_parses():
    blocks = yaml_blocks()
    assert len(blocks) >= 5
    for block in blocks:
        document = yaml.safe_load(block)
        assert "replay" in document
        assert parse_replay(document["replay"]) is not None
        # each block is also a whole SmartLoader config
        assert smartloader.load_config(document).replay is not None


def test_whole_config_examples_drive_a_loader():
    from torch.utils.data import DataLoader, TensorDataset
    whole = [yaml.safe_load(b) for b in yaml_blocks() if set(yaml.safe_load(b)) != {"replay"}]
    assert len(whole) >= 2
    ds = TensorDataset(torch.rand(64, 16), torch.zeros(64, dtype=torch.int64),
                       torch.arange(64))
    model = torch.nn.Linear(16, 2)
    for cfg in whole:
        loader = smartloader.wrap(DataLoader(ds, batch_size=8), model, cfg)
        replayed = [loader.stats.replayed for _ in loader]
        assert sum(replayed) > 0


def test_first_block_is_the_full_schema():
    config = parse_replay(yaml.safe_load(yaml_blocks()[0])["replay"])
    assert (config.capacity, config.priority, config.k) == (0.05, "epr", 3)


def test_documented_fashion_mnist_size():
    memory = ReplayMemory(capacity_from(0.1, 60000))
    memory.add({"input": torch.zeros(1, 28, 28, dtype=torch.uint8),
                "target": torch.zeros(1, dtype=torch.int64)})
    assert memory.nbytes == 6000 * (784 + 8 + 4) == 4_776_000
    assert "6,000 × (784 + 8 + 4) B = 4.8 MB" in DOC.read_text()


def test_documented_importance_weight_line():
    assert 'loss = (F.cross_entropy(out, y, reduction="none") * w).mean()' in DOC.read_text()
