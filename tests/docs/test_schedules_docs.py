"""Every ```yaml block in docs/schedules.md parses with parse_schedules (no drift); blocks
that are whole configs (with other top-level keys) also load with load_config."""
import pathlib
import re

import pytest
import yaml

from smartloader import load_config
from smartloader.schedules import SCHEDULE_KEYS, parse_schedules

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "schedules.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_doc_has_yaml_blocks():
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_yaml_block_parses(index):
    mapping = yaml.safe_load(BLOCKS[index])
    assert isinstance(mapping, dict) and set(mapping) & set(SCHEDULE_KEYS), mapping
    if set(mapping) <= set(SCHEDULE_KEYS):
        schedules = parse_schedules(mapping, total_steps=450_000)
    else:  # a whole config: the core loads it with its own total_steps
        schedules = load_config(mapping).schedules
        mapping = {k: v for k, v in mapping.items() if k in SCHEDULE_KEYS}
    for key in mapping:  # every key written in the block produced a schedule
        value = getattr(schedules, key)
        assert value is not None, key
        if callable(value):
            value(0), value(449_999)  # evaluates at both ends without error
