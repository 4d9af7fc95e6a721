"""docs/replay.md cannot drift: every YAML block parses, the size example is computed."""
import re
from pathlib import Path

import torch
import yaml

from smartloader.replay import ReplayMemory, capacity_from, parse_replay

DOC = Path(__file__).resolve().parents[1] / "docs" / "replay.md"


def yaml_blocks():
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)


def test_every_yaml_block_parses():
    blocks = yaml_blocks()
    assert len(blocks) >= 3
    for block in blocks:
        document = yaml.safe_load(block)
        assert set(document) == {"replay"}
        assert parse_replay(document["replay"]) is not None


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
