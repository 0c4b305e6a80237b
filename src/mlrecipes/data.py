"""Ingest + split: MNIST from IDX files, tabular tables (CSV/Parquet), sklearn's breast_cancer.

Every loader returns a `Dataset` with the same deterministic split, so runs of every
framework compare on the same rows. MNIST's test split is the official t10k set.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlrecipes.errors import UserError, require

# sha256 of the uncompressed IDX bytes of the official files.
MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Item counts of the official files: a file with exactly this many items must match its checksum.
MNIST_FULL_COUNT = {"train": 60000, "t10k": 10000}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Dataset:
    name: str
    source: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    feature_names: list[str] | None = None
    frame: object | None = field(default=None, repr=False)  # the source table, for mlflow.data

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def cache_root(configured: str | None = None) -> Path:
    """The data cache root: config value, else $MLRECIPES_DATA_DIR, else ~/.cache/mlrecipes."""
    root = configured or os.environ.get("MLRECIPES_DATA_DIR") or "~/.cache/mlrecipes"
    return Path(root).expanduser().resolve()


# --------------------------------------------------------------------------- IDX / MNIST


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


def _find(directory: Path, stem: str) -> Path | None:
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


def _mnist_split(directory: Path, prefix: str, cfg) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        stem = f"{prefix}-{kind}"
        path = _find(directory, stem)
        if path is None and cfg.download:
            try:
                path = download(stem, directory, list(cfg.mirrors), cfg.timeout, MNIST_FILES[stem])
            except UserError as exc:
                raise UserError(_missing_mnist_message(directory, str(exc))) from None
        if path is None:
            raise UserError(_missing_mnist_message(directory, "download disabled"))
        array = read_idx(path)
        if len(array) == MNIST_FULL_COUNT[prefix]:
            # The header is part of the official checksum: rebuild it from the array.
            header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            digest = hashlib.sha256(header + array.tobytes()).hexdigest()
            require(digest == MNIST_FILES[stem], f"checksum mismatch for {path}: re-download it")
        arrays.append(array)
    images, labels = arrays
    require(
        len(images) == len(labels) and images.ndim == 3 and labels.ndim == 1,
        f"corrupt MNIST files in {directory}: {images.shape} images vs {labels.shape} labels",
    )
    require(
        int(labels.max(initial=0)) < 10, f"corrupt MNIST labels in {directory}: label > 9"
    )
    return images, labels.astype(np.int64)


def _missing_mnist_message(directory: Path, why: str) -> str:
    names = ", ".join(f"{stem}.gz" for stem in MNIST_FILES)
    return (
        f"MNIST not found in {directory} and could not be downloaded ({why}); "
        f"put {names} there or set MLRECIPES_DATA_DIR to a directory whose mnist/ holds them"
    )


def load_mnist(cfg) -> Dataset:
    directory = cache_root(cfg.get("dir")) / "mnist"
    X, y = _mnist_split(directory, "train", cfg)
    X_test, y_test = _mnist_split(directory, "t10k", cfg)
    if cfg.get("limit"):
        require(int(cfg.limit) > 0, f"data.limit must be > 0, got {cfg.limit}")
        X, y = X[: int(cfg.limit)], y[: int(cfg.limit)]
    X_tr, X_val, y_tr, y_val = split(X, y, cfg.val_fraction, cfg.seed)
    return Dataset(
        name="mnist",
        source=str(directory),
        X_train=X_tr,
        y_train=y_tr,
        X_val=X_val,
        y_val=y_val,
        X_test=X_test,
        y_test=y_test,
        class_names=[str(i) for i in range(10)],
    )


# --------------------------------------------------------------------------- tables


def load_table(cfg) -> Dataset:
    """A CSV/Parquet table (a lakehouse extract) or sklearn's breast_cancer, plus a target."""
    import pandas as pd

    if cfg.kind == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        frame = load_breast_cancer(as_frame=True).frame
        source = "sklearn.datasets.load_breast_cancer"
    else:
        require(cfg.get("path") not in (None, "", "???"), f"data.path is required for data={cfg.kind}")
        path = Path(str(cfg.path)).expanduser()
        require(path.is_file(), f"data file not found: {path}")
        try:
            frame = pd.read_parquet(path) if cfg.kind == "parquet" else pd.read_csv(path)
        except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
            raise UserError(f"cannot read {path} as {cfg.kind}: {exc}") from None
        source = str(path.resolve())
    if cfg.get("limit"):
        require(int(cfg.limit) > 0, f"data.limit must be > 0, got {cfg.limit}")
        frame = frame.head(int(cfg.limit))
    target = str(cfg.target)
    require(
        target in frame.columns,
        f"target column '{target}' not in {source}; columns: {', '.join(map(str, frame.columns))}",
    )
    features = frame.drop(columns=[target])
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    require(not non_numeric, f"non-numeric feature columns (encode them first): {non_numeric}")
    classes, y = np.unique(frame[target].to_numpy(), return_inverse=True)
    require(len(classes) >= 2, f"target column '{target}' has fewer than 2 classes")
    X = features.to_numpy(dtype=np.float32)
    X_pool, X_test, y_pool, y_test = split(X, y, cfg.test_fraction, cfg.seed)
    X_tr, X_val, y_tr, y_val = split(X_pool, y_pool, cfg.val_fraction, cfg.seed)
    return Dataset(
        name=str(cfg.name),
        source=source,
        X_train=X_tr,
        y_train=y_tr,
        X_val=X_val,
        y_val=y_val,
        X_test=X_test,
        y_test=y_test,
        class_names=[str(c) for c in classes],
        feature_names=[str(c) for c in features.columns],
        frame=frame,
    )


def split(X, y, fraction: float, seed: int):
    """Deterministic, stratified when every class can be split."""
    from sklearn.model_selection import train_test_split

    require(0 < float(fraction) < 1, f"split fraction must be in (0, 1), got {fraction}")
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    try:
        return train_test_split(X, y, test_size=float(fraction), random_state=int(seed), stratify=stratify)
    except ValueError as exc:  # too few rows for the requested split
        raise UserError(f"cannot split {len(y)} rows with fraction {fraction}: {exc}") from None


def load(cfg) -> Dataset:
    require(
        cfg.kind in ("mnist", "csv", "parquet", "breast_cancer"),
        f"unknown data.kind '{cfg.kind}'; valid: mnist, csv, parquet, breast_cancer",
    )
    return load_mnist(cfg) if cfg.kind == "mnist" else load_table(cfg)


def flat_float(X: np.ndarray) -> np.ndarray:
    """MNIST images as (n, 784) float32 in [0, 1]; tabular features unchanged."""
    if X.dtype == np.uint8:
        return X.reshape(len(X), -1).astype(np.float32) / 255.0
    return X.astype(np.float32, copy=False)


def tabular(ds: Dataset, X: np.ndarray):
    """Input for tabular models: (n, 784) float pixels for MNIST; a DataFrame with the
    table's column names for tables, so the logged model's signature names its columns."""
    if ds.feature_names is None:
        return flat_float(X)
    import pandas as pd

    return pd.DataFrame(X.astype(np.float32, copy=False), columns=ds.feature_names)
