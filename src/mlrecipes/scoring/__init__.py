"""Score with the champion: the `predict` entry point of every project.

    mlflow run projects/lightgbm -e predict -P data=parquet -P output=s3://lake/predictions/ticks \\
        -P keys=[ts,symbol] -P overrides="data.path=s3://lake/ticks data.name=ticks"

One scoring run: compose the project's config (the same `data=` groups, filters and storage
options as training, plus conf/scoring), resolve the model (default `@champion` of
`registry.model_name`), check the input against the model's signature, then read, score and write
in record batches (memory stays bounded), as one MLflow run with rows, speed, the distribution
of the predictions and, when the input still carries the target, live metrics.

One concern per module:
- settings: the scoring config, checked before a run exists
- model: which registered version, loaded, and the input schema it needs
- inputs: the table's slice or an IDX set's images, as chunks in the model's input form
- predict: one chunk scored into an output batch
- stats: the predictions' distribution, live metrics, categories the model never saw
- slices: the slice as a Delta predicate and as the id of a Parquet output's files
- outputs: Parquet (staged, then swapped in) and Delta (one transaction), written in a thread
- run: the run, step by step (`python -m mlrecipes.scoring ...` runs `main`)
"""

from mlrecipes.scoring.run import main

__all__ = ["main"]
