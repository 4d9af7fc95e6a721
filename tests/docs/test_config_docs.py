"""docs/config.md carries the table of every key exactly as the specs generate it."""
from pathlib import Path

from smartloader.tools.keys import describe
from smartloader.config.keys import TOP
from smartloader.tools.keys import BEGIN, END, keys_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_keys_table_in_docs_matches_the_specs():
    text = DOC.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    written = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert written == keys_table(), "run `python -m smartloader keys` and paste it into " \
                                    "docs/config.md"


def test_table_has_a_row_per_key_with_a_meaning():
    rows = list(describe(TOP))
    keys = [row[0].split("`")[1] for row in rows]
    for top in TOP.keys:
        assert top in keys
    for nested in ("phases[].beta", "replay.priority.alpha", "lr.momentum_high",
                   "scorer.refresh_every", "noisy_guard.cap_to", "batch_transform.alpha"):
        assert nested in keys, nested
    assert all(row[4] for row in rows), [row[0] for row in rows if not row[4]]
    pool = rows[keys.index("pool_factor")]
    assert pool[1:4] == ("int", "`2`", ">= 1")
