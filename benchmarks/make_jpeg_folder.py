"""Write a JPEG folder in the ImageFolder layout (root/class_<k>/<n>.jpg), for JPEGFolder.

Each image is ImageNet-like in size (each side drawn from 256-500 px) and in structure, so
its JPEG file has a realistic size: a two-colour gradient at a random angle, 3-8 filled
ellipses, rectangles and polygons, a patch of grating whose orientation is the class (so the
set is learnable), a little blur and sensor-like noise; saved at quality 90. Image ``n`` is
class ``n % classes`` and depends only on (seed, n), so a folder is reproducible and any
image can be remade alone.

    python benchmarks/make_jpeg_folder.py /tmp/jpeg_folder --images 2000
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def make_image(seed: int, n: int, classes: int = 10) -> tuple[Image.Image, int]:
    """Image ``n`` of the folder made from ``seed``, and its class."""
    rng = np.random.default_rng([seed, n])
    label = n % classes
    w, h = (int(v) for v in rng.integers(256, 501, 2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    t = (xx * math.cos(angle) + yy * math.sin(angle)) / math.hypot(w, h) + 0.5
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = c0 + (c1 - c0) * t[..., None]
    # the class: a grating patch at orientation label * pi / classes
    theta = label * math.pi / classes
    period = rng.uniform(6, 16)
    px, py = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    pw, ph = w // 2, h // 2
    patch = np.s_[py:py + ph, px:px + pw]
    proj = xx[patch] * math.cos(theta) + yy[patch] * math.sin(theta)
    img[patch] += (60 * np.sin(2 * math.pi * proj / period))[..., None]
    image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(20, w // 2), y0 + rng.integers(20, h // 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            pts = rng.integers(0, [w, h], (int(rng.integers(3, 7)), 2))
            draw.polygon([tuple(int(v) for v in p) for p in pts], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    noisy = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(3, 9), (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), label


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="folder to write (created; existing images are overwritten)")
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quality", type=int, default=90)
    args = ap.parse_args(argv)
    if not 1 <= args.classes <= args.images:
        ap.error(f"need 1 <= --classes <= --images (every class folder gets an image), got "
                 f"--classes {args.classes} --images {args.images}")
    for k in range(args.classes):
        os.makedirs(os.path.join(args.root, f"class_{k}"), exist_ok=True)
    t0, total = time.perf_counter(), 0
    for n in range(args.images):
        image, label = make_image(args.seed, n, args.classes)
        path = os.path.join(args.root, f"class_{label}", f"{n:06d}.jpg")
        image.save(path, quality=args.quality)
        total += os.path.getsize(path)
    took = time.perf_counter() - t0
    print(f"{args.images} images in {args.classes} classes under {args.root}: "
          f"{total / 2**20:.1f} MiB ({total / args.images / 1024:.1f} KiB per image), "
          f"written in {took:.1f} s ({args.images / took:.0f} images/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
