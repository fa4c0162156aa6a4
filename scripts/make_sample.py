"""Build the bundled demo sample: 200 real CIFAR-10 images per class (160 train + 40 test).

    python scripts/make_sample.py ../shared/data/cifar10-jpeg.tar.gz

The original JPEG bytes are copied unchanged into a class-folder tarball (the same layout as the
source), so the sample stays small (~0.7 MB) and decodes through the normal loader.
"""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

PER_CLASS = {"train": 160, "test": 40}
OUT = Path(__file__).resolve().parent.parent / "cae" / "assets" / "cifar10-sample.tar.gz"


def main(source: str) -> None:
    picked: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    with tarfile.open(source, "r:*") as tar:
        for m in sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name):
            parts = Path(m.name).parts
            split, cls = parts[-3], parts[-2]
            bucket = picked.setdefault((split, cls), [])
            if len(bucket) < PER_CLASS.get(split, 0):
                bucket.append((Path(m.name).name, tar.extractfile(m).read()))
    with tarfile.open(OUT, "w:gz", compresslevel=9) as out:
        for (split, cls), files in sorted(picked.items()):
            for name, data in files:
                info = tarfile.TarInfo(f"cifar10-sample/{split}/{cls}/{name}")
                info.size, info.mtime = len(data), 0  # reproducible bytes
                out.addfile(info, io.BytesIO(data))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB, {sum(map(len, picked.values()))} images)")


if __name__ == "__main__":
    main(sys.argv[1])
