"""JPEG decode time at full size and with scaled decoding (1/2, 1/4, 1/8), one thread.

Two measurements over images spread evenly across a JPEG folder (``make_jpeg_folder.py``):

- **decode**: bytes already in memory -> RGB image, at full size and with libjpeg's scaled
  decoding at 1/2, 1/4 and 1/8 (``Image.draft``), so only the decoder is timed;
- **low_res**: what a pool sample costs from its file, ``JPEGFolder.low_res(i, size)``
  (scaled decode + one resize to size x size) against ``dataset[i]`` (full decode) and a full
  decode followed by the same resize, with the mean absolute difference of the two small
  images (0-255 levels).

Each image is timed best-of ``--repeats``, the variants interleaved per image so machine
drift hits them alike; the numbers are medians over the images.

    python benchmarks/make_jpeg_folder.py /tmp/jpeg_folder --images 2000
    python benchmarks/jpeg_decode.py /tmp/jpeg_folder --out benchmarks/results/jpeg_decode.json
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import PIL
import torch
from PIL import Image, features

from smartloader.sources import JPEGFolder, resize_square

SCALES = (1, 2, 4, 8)


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _decode_at(data: bytes, scale: int) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    w, h = image.size
    if scale > 1:
        image.draft("RGB", (w // scale, h // scale))
        expected = (-(-w // scale), -(-h // scale))
        if image.size != expected:
            raise RuntimeError(f"draft gave {image.size} for 1/{scale} of {(w, h)}, "
                               f"expected {expected}")
    return image.convert("RGB")


def _full_then_resize(path: str, size: int) -> torch.Tensor:
    with Image.open(path) as image:
        small = resize_square(image.convert("RGB"), size)
    return torch.from_numpy(np.array(small)).permute(2, 0, 1).contiguous()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="a JPEG folder (root/<class>/<image>.jpg)")
    ap.add_argument("--images", type=int, default=500, help="images timed, spread evenly")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many per image")
    ap.add_argument("--size", type=int, default=64, help="low_res side in px")
    ap.add_argument("--out", default=None, help="JSON file for the result")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ds = JPEGFolder(args.root)
    count = min(args.images, len(ds))
    picks = np.linspace(0, len(ds) - 1, count).round().astype(int).tolist()

    decode_s: dict[int, list[float]] = {s: [] for s in SCALES}
    low_res_s, full_s, full_resize_s, diffs, sides, kib = [], [], [], [], [], []
    for n, i in enumerate(picks):
        path = ds.samples[i][0]
        with open(path, "rb") as fh:
            data = fh.read()
        kib.append(len(data) / 1024)
        sides.append(Image.open(io.BytesIO(data)).size)
        order = SCALES[n % 4:] + SCALES[:n % 4]   # rotate which variant goes first
        for s in order:
            decode_s[s].append(_best(lambda: _decode_at(data, s), args.repeats))
        low_res_s.append(_best(lambda: ds.low_res(i, args.size), args.repeats))
        full_s.append(_best(lambda: ds[i], args.repeats))
        full_resize_s.append(_best(lambda: _full_then_resize(path, args.size), args.repeats))
        diffs.append((ds.low_res(i, args.size)[0].float()
                      - _full_then_resize(path, args.size).float()).abs().mean().item())

    ms = {s: statistics.median(v) * 1e3 for s, v in decode_s.items()}
    result = {
        "decode_ms_median": {f"1/{s}": ms[s] for s in SCALES},
        "decode_speedup_vs_full": {f"1/{s}": ms[1] / ms[s] for s in SCALES[1:]},
        "low_res": {
            "size": args.size,
            "low_res_ms_median": statistics.median(low_res_s) * 1e3,
            "full_decode_ms_median": statistics.median(full_s) * 1e3,
            "full_decode_then_resize_ms_median": statistics.median(full_resize_s) * 1e3,
            "speedup_vs_full_decode_then_resize":
                statistics.median(full_resize_s) / statistics.median(low_res_s),
            "mean_abs_diff_vs_full_decode_then_resize": statistics.mean(diffs),
            "max_mean_abs_diff": max(diffs),
        },
        "images": {"timed": count, "in_folder": len(ds),
                   "mean_width": statistics.mean(w for w, _ in sides),
                   "mean_height": statistics.mean(h for _, h in sides),
                   "mean_file_kib": statistics.mean(kib)},
        "config": {"root": os.path.basename(os.path.normpath(args.root)),
                   "repeats": args.repeats, "threads": 1, "pillow": PIL.__version__,
                   "libjpeg_turbo": features.version_feature("libjpeg_turbo"),
                   "torch": torch.__version__, "python": platform.python_version(),
                   "cpu": platform.processor() or platform.machine(),
                   "load_avg_1m": os.getloadavg()[0]},
    }
    print(f"{count} images, mean {result['images']['mean_width']:.0f} x "
          f"{result['images']['mean_height']:.0f} px, {result['images']['mean_file_kib']:.1f} "
          f"KiB; Pillow {PIL.__version__}, libjpeg-turbo "
          f"{result['config']['libjpeg_turbo'] or 'no'}")
    for s in SCALES:
        extra = "" if s == 1 else f"  ({ms[1] / ms[s]:.2f}x faster)"
        print(f"decode 1/{s}: {ms[s]:6.3f} ms{extra}")
    lr = result["low_res"]
    print(f"low_res(i, {args.size}): {lr['low_res_ms_median']:.3f} ms; full decode "
          f"{lr['full_decode_ms_median']:.3f} ms, full decode + resize "
          f"{lr['full_decode_then_resize_ms_median']:.3f} ms "
          f"({lr['speedup_vs_full_decode_then_resize']:.2f}x); mean |diff| "
          f"{lr['mean_abs_diff_vs_full_decode_then_resize']:.2f} levels")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
