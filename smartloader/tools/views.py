"""``smartloader views ROOT --size S --cache-dir DIR``: fill a JPEG folder's view cache.

``pool_source: {type: two_resolution, size: S, cache: true, cache_dir: DIR}`` scores pools
on views read from ``DIR``; a view not there is loaded (and written) when a pool needs it.
This command loads every missing view of the :class:`~smartloader.sources.jpeg_folder.JPEGFolder`
at ``ROOT`` first, in worker processes, so that even the first epoch of training loads only
the chosen samples. Run it again after adding files: a changed folder has a new key (every
file's path, size and modification time), hence a new subfolder of ``DIR``.
"""
from __future__ import annotations

import argparse

__all__ = ["views_main"]


def views_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="smartloader views",
        description="Load every low-resolution view of a JPEG folder (ROOT/<class>/*.jpg) "
                    "into the view cache on disk that pool_source {type: two_resolution, "
                    "cache: true, cache_dir: DIR} reads.")
    parser.add_argument("root", help="the image folder: one sub-folder per class")
    parser.add_argument("--size", type=int, default=64,
                        help="side of the views in px: pool_source.size (default 64)")
    parser.add_argument("--cache-dir", required=True, help="pool_source.cache_dir")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes that decode (default 2)")
    parser.add_argument("--chunk", type=int, default=256,
                        help="views per worker task (default 256)")
    parser.add_argument("--on-corrupt", choices=("raise", "skip"), default="raise",
                        help="as JPEGFolder's on_corrupt, which must match the training "
                             "dataset's (it is part of the key); default raise")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("size", "workers", "chunk"):
        if getattr(args, name) < (8 if name == "size" else 1):
            parser.error(f"--{name}: must be >= {8 if name == 'size' else 1}, got "
                         f"{getattr(args, name)}")
    from smartloader.pipeline.view_cache import prefill
    from smartloader.sources.jpeg_folder import JPEGFolder
    ds = JPEGFolder(args.root, on_corrupt=args.on_corrupt)
    got = prefill(ds, args.size, args.cache_dir, workers=args.workers, chunk=args.chunk,
                  progress=not args.quiet)
    rate = got["loaded"] / got["seconds"] if got["seconds"] > 0 else 0.0
    print(f"{got['views']} views at {args.size} px: {got['loaded']} loaded in "
          f"{got['seconds']:.1f} s ({rate:.0f} views/s), {got['views'] - got['loaded']} "
          f"already there; in {got['folder']}")
    return 0
