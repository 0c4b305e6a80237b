"""Data sets that ship with scikit-learn, read as tables: a source that needs no files, for
quick starts and tests."""

from __future__ import annotations

from mlrecipes.data import columns, ingest
from mlrecipes.data.dataset import Dataset
from mlrecipes.errors import require


def breast_cancer(cfg, task: str = "classification") -> Dataset:
    """sklearn's breast cancer set (569 rows, 30 numeric features, binary `target`)."""
    import pyarrow as pa
    from sklearn.datasets import load_breast_cancer

    require(task in ingest.TASKS, f"unknown task '{task}'; valid: {', '.join(ingest.TASKS)}")
    arrow = pa.Table.from_pandas(load_breast_cancer(as_frame=True).frame, preserve_index=False)
    describe = "sklearn.datasets.load_breast_cancer"
    ingest.require_target(str(cfg.target), arrow.column_names, describe)
    features, read = columns.select_columns(cfg, arrow.column_names, arrow.schema)
    return ingest.from_arrow(cfg, task, lambda: arrow.select(read), features, uri=describe, describe=describe,
                             lineage={})
