"""Data sources: datasets that read training data from storage.

- :mod:`.jpeg_folder`: :class:`JPEGFolder`, JPEG files in class sub-folders (the ImageFolder
  layout), decoded at full size by ``dataset[i]`` or small and cheaply by
  ``dataset.low_res(i, size)`` (JPEG scaled decoding), for scoring a pool at low resolution.

Imports only torch, numpy, Pillow and :mod:`smartloader.errors` / :mod:`smartloader.common`,
and nothing imports it but its users: Pillow is needed only here (``smartloader[jpeg]``).
"""
from smartloader.sources.jpeg_folder import (ON_CORRUPT, CorruptImageError, CorruptImageWarning,
                                             JPEGFolder, decode, draft_size, resize_square)

__all__ = ["JPEGFolder", "decode", "draft_size", "resize_square", "CorruptImageError",
           "CorruptImageWarning", "ON_CORRUPT"]
