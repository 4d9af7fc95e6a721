"""Every YAML example in docs/strategies.md builds: sections with the strategy builders,
whole configs with smartloader.load_config."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import smartloader

from smartloader.pipeline.hard_augment import build_hard_augment
from smartloader.augment.mixing import build_batch_transform
from smartloader.scoring.noisy_guard import build_noisy_guard
from smartloader.scoring.scorers import build_scorer
from smartloader.selection.rules import build_selector

DOC = Path(__file__).resolve().parents[2] / "docs" / "strategies.md"
BUILDERS = {
    "selector": build_selector,
    "scorer": build_scorer,
    "noisy_guard": build_noisy_guard,
    "batch_transform": build_batch_transform,
    "hard_augment": build_hard_augment,
}


def yaml_blocks() -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def _is_section(block: str) -> bool:
    data = yaml.safe_load(block)
    return len(data) == 1 and next(iter(data)) in BUILDERS


def test_doc_has_an_example_per_strategy():
    sections = [next(iter(yaml.safe_load(b))) for b in yaml_blocks() if _is_section(b)]
    assert len(sections) >= 11
    assert set(sections) == set(BUILDERS)
    assert sum(not _is_section(b) for b in yaml_blocks()) >= 3  # whole configs


def test_every_scorer_type_has_an_example():
    from smartloader.scoring.scorers import SCORER_TYPES
    shown = {yaml.safe_load(b)["scorer"]["type"] for b in yaml_blocks()
             if _is_section(b) and "scorer" in yaml.safe_load(b)}
    assert shown == set(SCORER_TYPES)


@pytest.mark.parametrize("block", [b for b in yaml_blocks() if not _is_section(b)])
def test_whole_config_loads(block):
    cfg = smartloader.load_config(yaml.safe_load(block))
    assert smartloader.load_config(cfg.to_dict()).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("block", [b for b in yaml_blocks() if _is_section(b)])
def test_yaml_block_builds(block):
    data = yaml.safe_load(block)
    assert isinstance(data, dict) and len(data) == 1
    (section, body), = data.items()
    built = BUILDERS[section](body, section)
    assert built is not None
    assert built.state_dict() is not None


def test_every_yaml_block_is_a_config_or_a_marked_fragment():
    """A reader may paste any block into smartloader.yaml: it loads, or it says it is a
    fragment (and of what) on its first line."""
    for block in yaml_blocks():
        if block.startswith("# fragment:"):
            assert len(block.splitlines()[0]) > len("# fragment: ") + 10
            continue
        smartloader.load_config(yaml.safe_load(block))
