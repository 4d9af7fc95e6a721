"""docs/two_resolution.md quotes benchmarks/results/two_resolution.json: the table cannot
drift from the recorded run."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ROWS = [("uniform pass-through", "uniform"),
        ("plain selection (2x pool decoded at full size)", "plain_selection"),
        ("two-resolution, no cache", "two_resolution"),
        ("two-resolution, `cache: true`, first epoch", "two_resolution_cached_first_epoch"),
        ("two-resolution, `cache: true`, second epoch", "two_resolution_cached"),
        ("two-resolution, `cache_dir` filled before training (first epoch)",
         "two_resolution_prefilled")]


def test_the_table_is_the_recorded_run():
    page = (ROOT / "docs" / "two_resolution.md").read_text()
    r = json.loads((ROOT / "benchmarks" / "results" / "two_resolution.json").read_text())
    assert {"uniform_ips", "plain_selection_ips", "two_resolution_ips", "config"} <= set(r)

    def cell(mode, suffix):
        ips = r[f"{mode}_ips{suffix}"]
        return f"{ips:.1f}" if mode == "uniform" else \
            f"{ips:.1f} ({ips / r[f'uniform_ips{suffix}']:.2f}x)"

    for label, mode in ROWS:
        row = f"| {label} | {cell(mode, '')} | {cell(mode, '_with_model')} |"
        assert row in page, row
    for key, runs in r["runs"].items():  # the figures are the medians of the passes
        assert len(runs) == r["config"]["repeats"]
        assert r[key] == sorted(runs)[len(runs) // 2], key
    p = r["prefill"]
    assert f"took {p['seconds']:.1f} s for the {p['views']:,} views" in page
    assert f"Medians of {r['config']['repeats']} passes" in page
