"""Ordinary photos that are not CIFAR-10, as 32×32 tiles: does a colorizer generalise beyond it?

The photos ship with the project's own dependencies (scikit-learn's ``china.jpg`` and
``flower.jpg``, matplotlib's ``grace_hopper.jpg``), so the check runs offline everywhere.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

TILE = 32
SHORT_SIDE = 96  # each photo is shrunk to this, then cut into 32×32 tiles (3 × 4 or so per photo)


def photo_paths() -> list[Path]:
    import matplotlib
    import sklearn

    sk = Path(sklearn.__file__).parent / "datasets" / "images"
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    return [p for p in (sk / "china.jpg", sk / "flower.jpg", mpl / "grace_hopper.jpg") if p.exists()]


@functools.cache
def photo_tiles() -> tuple[np.ndarray, list[str]]:
    """uint8 tiles (N, 32, 32, 3) and the photo each came from."""
    tiles, names = [], []
    for path in photo_paths():
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = SHORT_SIDE / min(im.size)
            im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.LANCZOS)
            pixels = np.asarray(im)
        for y in range(0, pixels.shape[0] - TILE + 1, TILE):
            for x in range(0, pixels.shape[1] - TILE + 1, TILE):
                tiles.append(pixels[y : y + TILE, x : x + TILE])
                names.append(path.name)
    return np.stack(tiles), names
