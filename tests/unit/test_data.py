"""mlrecipes.data against real bytes: IDX parsing, corruption, checksums, downloads, tables."""

import gzip
import hashlib
import http.server
import shutil
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from mlrecipes import data
from mlrecipes.errors import UserError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mnist"


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def mnist_cfg(root, **extra):
    base = {"kind": "mnist", "name": "mnist", "dir": str(root), "limit": 0, "val_fraction": 0.1,
            "seed": 42, "download": False, "timeout": 5, "mirrors": []}
    return OmegaConf.create({**base, **extra})


def test_parse_idx_roundtrip_raw_and_gz(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    (tmp_path / "a").write_bytes(idx_bytes(images))
    with gzip.open(tmp_path / "a.gz", "wb") as fh:
        fh.write(idx_bytes(images))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a"), images)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.gz"), images)


def test_fixture_is_real_mnist_subset():
    ds = data.load_mnist(mnist_cfg(FIXTURE.parent))
    assert ds.X_train.shape[1:] == (28, 28) and ds.X_train.dtype == np.uint8
    assert len(ds.y_train) + len(ds.y_val) == 600 and len(ds.y_test) == 200
    assert set(np.unique(ds.y_train)) == set(range(10))


def test_a_time_window_on_an_image_set_is_one_line():
    """Every entry point takes the window's parameters (conf/params.yaml), whatever its data; only
    tables have a time column, and an empty value (the parameters' default) is no window."""
    def composed(**window):
        return OmegaConf.create({"data": mnist_cfg(FIXTURE.parent), "window": window}).data

    assert len(data.load(composed(interval="", column="", length=None)).y_test) == 200
    with pytest.raises(UserError, match=r"^window.length is for tables \(parquet, delta, csv\); data=mnist has no"):
        data.load(composed(interval="", column="", length="30d"))


def test_an_image_set_has_no_column_to_report_by(tracking_uri):
    """data.report_by on MNIST: one line before training (a table's reader checks its own columns)."""
    import mlflow

    from mlrecipes import config, recipe

    xgboost = Path(__file__).resolve().parents[2] / "projects" / "xgboost"
    cfg = config.compose(xgboost, ["data=mnist", "++data.report_by=label"])
    ds = data.load_mnist(mnist_cfg(FIXTURE.parent))

    def fit(cfg, ds):
        raise AssertionError("trained despite data.report_by on an image set")

    with mlflow.start_run(), pytest.raises(UserError, match=r"^data.report_by: 'label', but data=mnist is an image"):
        recipe.steps(cfg, fit, ds=ds, register=False)


def test_split_is_deterministic_and_stratified():
    first = data.load_mnist(mnist_cfg(FIXTURE.parent))
    second = data.load_mnist(mnist_cfg(FIXTURE.parent))
    np.testing.assert_array_equal(first.y_val, second.y_val)
    np.testing.assert_array_equal(first.X_train, second.X_train)
    assert set(np.unique(first.y_val)) == set(range(10))


def test_flat_float_scales_pixels_into_a_64_byte_aligned_array():
    # tf_mnist hands this array to TensorFlow without a copy, which needs the 64-byte boundary.
    rng = np.random.default_rng(0)
    for n in (1, 7, 600):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        flat = data.flat_float(images)
        assert flat.shape == (n, 784) and flat.dtype == np.float32
        assert flat.ctypes.data % 64 == 0 and flat.flags.c_contiguous and flat.flags.writeable
        np.testing.assert_array_equal(flat, images.reshape(n, -1).astype(np.float32) / np.float32(255))
    table = rng.normal(size=(5, 3))
    assert data.flat_float(table).dtype == np.float32
    np.testing.assert_allclose(data.flat_float(table), table, rtol=1e-6)


def test_truncated_idx_is_one_line_error(tmp_path):
    raw = gzip.decompress((FIXTURE / "train-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(UserError, match="corrupt IDX file .*data bytes, header says"):
        data.read_idx(tmp_path / "train-images-idx3-ubyte")


def test_truncated_gzip_and_bad_magic(tmp_path):
    gz = (FIXTURE / "train-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(UserError, match="corrupt IDX file"):
        data.read_idx(tmp_path / "cut.gz")
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04hello")
    with pytest.raises(UserError, match="bad magic"):
        data.read_idx(tmp_path / "junk")


def test_full_size_file_with_wrong_bytes_fails_checksum(tmp_path):
    labels = np.zeros(10000, dtype=np.uint8)  # official t10k length, wrong content
    mnist = tmp_path / "mnist"
    shutil.copytree(FIXTURE, mnist)
    (mnist / "t10k-labels-idx1-ubyte.gz").unlink()
    (mnist / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(UserError, match="checksum mismatch"):
        data.read_idx_pair(mnist, ("test_images", "test_labels"), mnist_cfg(tmp_path))


def test_offline_without_files_names_directory_and_files(tmp_path):
    port = _free_port()  # nothing listens there: the download fails at once
    cfg = mnist_cfg(tmp_path, download=True, mirrors=[f"http://127.0.0.1:{port}/mnist"])
    with pytest.raises(UserError) as err:
        data.load_mnist(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "mnist") in message
    for stem in data.MNIST_FILES:
        assert f"{stem}.gz" in message


@pytest.fixture
def http_mirror(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a directory."""
    served = tmp_path / "served"
    served.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verifies_checksum_and_writes_atomically(tmp_path, http_mirror):
    served, url = http_mirror
    stem = "train-labels-idx1-ubyte"
    shutil.copy(FIXTURE / f"{stem}.gz", served / f"{stem}.gz")
    good = hashlib.sha256(gzip.decompress((served / f"{stem}.gz").read_bytes())).hexdigest()
    target_dir = tmp_path / "cache" / "mnist"

    with pytest.raises(UserError, match="checksum mismatch"):
        data.download(stem, target_dir, [url], 5, "0" * 64)
    assert not target_dir.exists() or not any(target_dir.iterdir())  # nothing half-written

    path = data.download(stem, target_dir, [f"http://127.0.0.1:{_free_port()}", url], 5, good)
    assert path == target_dir / f"{stem}.gz"
    assert path.read_bytes() == (served / f"{stem}.gz").read_bytes()
    assert [p.name for p in target_dir.iterdir()] == [f"{stem}.gz"]  # no temp files left


def test_mnist_download_from_mirror_rejects_wrong_files(tmp_path, http_mirror):
    served, url = http_mirror
    for f in FIXTURE.iterdir():  # the subset is not the official file: checksums differ
        shutil.copy(f, served / f.name)
    cfg = mnist_cfg(tmp_path / "cache", download=True, mirrors=[url])
    with pytest.raises(UserError, match="checksum mismatch"):
        data.load_mnist(cfg)


def table_cfg(path, **extra):
    base = {"kind": "csv", "name": "t", "path": str(path), "target": "label", "limit": 0,
            "val_fraction": 0.2, "test_fraction": 0.2, "seed": 1}
    return OmegaConf.create({**base, **extra})


def test_csv_and_parquet_tables(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(100, 3)), columns=["a", "b", "c"])
    frame["label"] = np.where(frame["a"] > 0, "up", "down")
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    for kind, name in (("csv", "t.csv"), ("parquet", "t.parquet")):
        ds = data.load(table_cfg(tmp_path / name, kind=kind))
        assert ds.class_names == ["down", "up"]
        assert ds.feature_names == ["a", "b", "c"]
        assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 100


def test_table_errors(tmp_path):
    with pytest.raises(UserError, match="data not found"):
        data.load(table_cfg(tmp_path / "missing.csv"))
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(UserError, match="target column 'label' not in .*columns: a, b"):
        data.load(table_cfg(tmp_path / "t.csv"))


def test_breast_cancer_is_offline():
    ds = data.load(OmegaConf.create({"kind": "breast_cancer", "name": "breast_cancer", "target": "target",
                                     "limit": 0, "val_fraction": 0.1, "test_fraction": 0.2, "seed": 42}))
    assert ds.num_classes == 2 and ds.X_train.shape[1] == 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
