"""docs/sources.md quotes benchmarks/results/jpeg_decode.json: the numbers cannot drift."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_decode_numbers_in_the_page_are_the_recorded_run():
    page = (ROOT / "docs" / "sources.md").read_text()
    result = json.loads((ROOT / "benchmarks" / "results" / "jpeg_decode.json").read_text())
    ms, speedup = result["decode_ms_median"], result["decode_speedup_vs_full"]
    rows = [f"| full size | {ms['1/1']:.2f} | 1x |"]
    rows += [f"| {s} | {ms[s]:.2f} | {speedup[s]:.2f}x faster |" for s in ("1/2", "1/4", "1/8")]
    low = result["low_res"]
    rows += [f"| `low_res(i, {low['size']})` (1/4 decode + resize) | "
             f"{low['low_res_ms_median']:.2f} |",
             f"| full decode + the same resize to {low['size']} | "
             f"{low['full_decode_then_resize_ms_median']:.2f} "
             f"({low['speedup_vs_full_decode_then_resize']:.2f}x `low_res`) |",
             f"| `dataset[i]`, full decode to a tensor | {low['full_decode_ms_median']:.2f} |"]
    for row in rows:
        assert row in page, row
    images = result["images"]
    assert (f"{images['timed']:,} generated JPEGs (mean {images['mean_width']:.0f} x "
            f"{images['mean_height']:.0f} px, {images['mean_file_kib']:.1f} KiB" in page)
    assert f"by {low['mean_abs_diff_vs_full_decode_then_resize']:.1f} levels of 255" in page
    assert f"({low['max_mean_abs_diff']:.1f} for the worst image" in page
    config = result["config"]
    assert f"Pillow {config['pillow']} built with libjpeg-turbo {config['libjpeg_turbo']}" in page
