"""IDX image sets (MNIST, Fashion-MNIST, KMNIST, ...): parse, download, verify, load.

The files live in <cache root>/<name>/ (raw or gzip). Downloads are checked against the sha256 of
the uncompressed bytes and written atomically; a file with the full item count must match its
checksum. The official test set is kept; validation is a stratified split with a fixed seed,
the same for every framework.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from mlrecipes.data import splits
from mlrecipes.data.dataset import Dataset
from mlrecipes.errors import UserError, require, see
from mlrecipes.paths import DEFAULT_DATA_DIR

# sha256 of the uncompressed IDX bytes of the official files.
MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Item counts of the official files: a file with exactly this many items must match its checksum.
MNIST_FULL_COUNT = {"train": 60000, "t10k": 10000}
IDX_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def cache_root(configured: str | None = None) -> Path:
    """The data cache root: config value, else $MLRECIPES_DATA_DIR, else ~/.cache/mlrecipes."""
    root = configured or os.environ.get("MLRECIPES_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(root).expanduser().resolve()


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (raw or gzip); any truncation or header damage is a UserError."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # gzip raises these on truncated or non-gzip input
        raise UserError(f"corrupt IDX file {path}: {exc}") from None
    return parse_idx(raw, path)


def parse_idx(raw: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UserError(f"corrupt IDX file {path}: bad magic number")
    ndim = raw[3]
    header = 4 + 4 * ndim
    require(len(raw) >= header, f"corrupt IDX file {path}: header truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise UserError(
            f"corrupt IDX file {path}: {len(raw) - header} data bytes, header says {expected}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def find_idx(directory: Path, stem: str) -> Path | None:
    """`<stem>.gz` or `<stem>` in `directory`, the compressed one first."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def download(stem: str, directory: Path, mirrors: list[str], timeout: float, sha256: str) -> Path:
    """Fetch `<stem>.gz` from the first mirror whose uncompressed bytes match `sha256`.

    The file is written to a temporary name in `directory` and renamed into place, so a
    reader never sees a half-written file under the real name.
    """
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                payload = resp.read()
            digest = hashlib.sha256(gzip.decompress(payload)).hexdigest()
        except (urllib.error.URLError, OSError, EOFError, ValueError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        if digest != sha256:
            errors.append(f"{url}: checksum mismatch (sha256 {digest[:12]}…)")
            continue
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{stem}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            target = directory / f"{stem}.gz"
            os.replace(tmp, target)  # atomic on one filesystem
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
    raise UserError("; ".join(errors) or "no mirrors configured")


def idx_files(cfg) -> dict[str, tuple[str, str | None, int | None]]:
    """role -> (file stem, sha256 of the uncompressed bytes, item count of the full file).

    A data group lists its own `files`; without them, MNIST's. The checksum is verified when a
    file has the full item count (a committed subset, such as the tests' fixture, cannot match).
    """
    files = cfg.get("files")
    if not files:
        return {role: (stem, MNIST_FILES[stem], MNIST_FULL_COUNT[stem.split("-")[0]])
                for role, stem in zip(IDX_ROLES, MNIST_FILES, strict=True)}
    missing = [role for role in IDX_ROLES if role not in files]
    require(not missing, f"data.files needs {', '.join(IDX_ROLES)}; missing: {', '.join(missing)}")
    return {role: (str(files[role].name), files[role].get("sha256"), files[role].get("items"))
            for role in IDX_ROLES}


def read_idx_pair(directory: Path, roles: tuple[str, str], cfg) -> tuple[np.ndarray, np.ndarray]:
    """(images, int64 labels) of two roles of `idx_files`, e.g. ("test_images", "test_labels"):
    found in `directory` or downloaded when the data group allows, checksummed, checked together."""
    spec = idx_files(cfg)
    arrays = []
    for role in roles:
        stem, sha256, items = spec[role]
        path = find_idx(directory, stem)
        if path is None and cfg.download:
            try:
                require(bool(sha256), f"no sha256 for {stem} in data.files: cannot verify a download")
                path = download(stem, directory, list(cfg.mirrors), cfg.timeout, sha256)
            except UserError as exc:
                raise UserError(missing_message(directory, cfg, str(exc))) from None
        if path is None:
            raise UserError(missing_message(directory, cfg, "download disabled"))
        array = read_idx(path)
        if sha256 and (items is None or len(array) == int(items)):
            # The header is part of the checksum: rebuild it from the array.
            header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            digest = hashlib.sha256(header + array.tobytes()).hexdigest()
            require(digest == sha256, f"checksum mismatch for {path}: re-download it")
        arrays.append(array)
    images, labels = arrays
    require(
        len(images) == len(labels) and images.ndim == 3 and labels.ndim == 1,
        f"corrupt IDX files in {directory}: {images.shape} images vs {labels.shape} labels",
    )
    classes = len(class_names(cfg))
    require(int(labels.max(initial=0)) < classes,
            f"corrupt labels in {directory}: label {int(labels.max())} but {classes} classes")
    return images, labels.astype(np.int64)


def class_names(cfg) -> list[str]:
    return [str(c) for c in (cfg.get("class_names") or range(10))]


def missing_message(directory: Path, cfg, why: str) -> str:
    names = ", ".join(f"{stem}.gz" for stem, _, _ in idx_files(cfg).values())
    label = "MNIST" if str(cfg.get("name", "mnist")) == "mnist" else str(cfg.name)
    hint = see("mnist-not-found") if why == "download disabled" else see("the-machine-is-offline")
    return (
        f"{label} not found in {directory} and could not be downloaded ({why}); "
        f"put {names} there or set MLRECIPES_DATA_DIR to a directory whose {directory.name}/ holds them"
        + hint
    )


def idx_directory(cfg) -> Path:
    return cache_root(cfg.get("dir")) / str(cfg.get("name", "mnist"))


def load_idx(cfg, task: str = "classification") -> Dataset:
    """An IDX image set (MNIST, Fashion-MNIST, KMNIST, ...) from <cache root>/<name>/."""
    require(task == "classification", f"task={task}: image sets are classification only")
    directory = idx_directory(cfg)
    X, y = read_idx_pair(directory, ("train_images", "train_labels"), cfg)
    X_test, y_test = read_idx_pair(directory, ("test_images", "test_labels"), cfg)
    if cfg.get("limit"):
        require(int(cfg.limit) > 0, f"data.limit must be > 0, got {cfg.limit}")
        X, y = X[: int(cfg.limit)], y[: int(cfg.limit)]
    train, val = splits.holdout(np.arange(len(y)), y, splits.fraction(cfg.val_fraction, "val_fraction"), cfg.seed)
    return Dataset(
        name=str(cfg.get("name", "mnist")),
        source=str(directory),
        X_train=X[train],
        y_train=y[train],
        X_val=X[val],
        y_val=y[val],
        X_test=X_test,
        y_test=y_test,
        class_names=class_names(cfg),
    )


load_mnist = load_idx  # MNIST is the default IDX set

