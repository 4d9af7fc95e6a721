import re

import pytest
import torch

from smartloader.__main__ import main


@pytest.mark.slow
def test_demo_runs_and_prints_the_table(capsys):
    before = torch.random.get_rng_state()
    assert main(["demo", "--steps", "24", "--batch-size", "32", "--quiet"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.split() and line.split()[0] in ("uniform", "smartloader")}
    assert set(rows) == {"uniform", "smartloader"}
    for line in rows.values():
        assert re.search(r"\b24\b", line) and re.search(r"\d+\.\d\d%$", line.strip())
    assert rows["uniform"].split()[4] == "-"          # no overhead for the plain loop
    assert re.search(r"\(\d+\.\d%\)", rows["smartloader"])  # overhead share reported
    assert torch.equal(before, torch.random.get_rng_state())


def test_unknown_command_is_an_error(capsys):
    assert main(["demoo"]) == 2
    assert "unknown command 'demoo'" in capsys.readouterr().err
