"""TensorFlow/Keras MLP and CNN on the shared recipe: only the model code lives here."""

import math
import os
import re
import sys

# oneDNN kernels train the CNN about 1.8x faster on this project's CPUs; TensorFlow only turns
# them on by itself for some Intel CPUs. Read at import time, so set before importing Keras.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from mlrecipes import recipe  # noqa: E402
from mlrecipes.data import flat_float  # noqa: E402
from mlrecipes.errors import UserError, require  # noqa: E402
from mlrecipes.sweep import pruning  # noqa: E402


def keras_message(exc: Exception) -> str:
    """The one line that says what is wrong in a Keras error (they span many lines, with colour)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        lines = lines[1:]
    return lines[0] if lines else type(exc).__name__


def build(arch, num_inputs: int, num_classes: int) -> keras.Model:
    """A keras.Sequential of the arch's layer list, then a softmax over the classes."""
    layers = [keras.Input(shape=(num_inputs,))]
    for spec in OmegaConf.to_container(arch.layers):
        kind = spec.pop("layer", None)
        cls = getattr(keras.layers, str(kind), None)
        require(
            isinstance(cls, type) and issubclass(cls, keras.layers.Layer),
            f"unknown Keras layer '{kind}' in arch.layers",
        )
        try:
            layers.append(cls(**spec))
        except (TypeError, ValueError) as exc:
            raise UserError(f"bad arguments for {kind} in arch.layers: {keras_message(exc)}") from None
    layers.append(keras.layers.Dense(num_classes, activation="softmax"))
    try:  # Sequential checks that each layer fits the previous one's output shape
        return keras.Sequential(layers, name=str(arch.name))
    except ValueError as exc:
        raise UserError(f"arch '{arch.name}' does not fit its input: {keras_message(exc)}") from None


def as_tensor(a: np.ndarray):
    """A tensor over the array's own memory (DLPack) where TensorFlow's 64-byte alignment holds
    (flat_float's arrays); a copy otherwise. The copy of MNIST's 188 MB of training pixels took
    ~1 s of the first epoch on the 2-core machines (fresh memory) and 188 MB more at the peak."""
    import tensorflow as tf

    if a.flags.c_contiguous and a.flags.writeable and a.ctypes.data % 64 == 0:
        return tf.experimental.dlpack.from_dlpack(a.__dlpack__())
    return tf.constant(a)


def batches(X, y=None, *, batch_size: int, seed: int | None = None):
    """Batches of in-memory arrays as a tf.data pipeline with tf.data's autotuning off; reshuffled
    every epoch when a seed is given.

    Keras builds the same pipeline from NumPy arrays (a shuffled index per epoch, a gather per
    batch) but with autotuning on, and deleting an iterator then waits for autotuning's thread:
    at the end of every epoch, validation and predict call, the whole process sat idle, from half a
    second up to 9.5 s (CPU use sampled every 0.5 s; py-spy puts the main thread in
    ~IteratorResource). That was the "slow epoch" of earlier benchmarks. Fixed buffer sizes
    instead: 2 parallel gathers (the cores here), 2 batches prefetched.
    """
    import tensorflow as tf

    arrays = (X,) if y is None else (X, y)
    data = tf.data.Dataset.from_tensors(tuple(as_tensor(a) for a in arrays)).repeat()
    index = tf.data.Dataset.range(len(X))
    if seed is not None:
        index = index.shuffle(len(X), seed=seed, reshuffle_each_iteration=True)
    pipeline = (tf.data.Dataset.zip(index.batch(batch_size), data)
                .map(lambda i, arrays: tuple(tf.gather(a, i) for a in arrays), num_parallel_calls=2)
                .prefetch(2))
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.apply_default_optimizations = False  # as Keras: no graph rewrites
    return pipeline.with_options(options)


def optimizer(opt, total_steps: int) -> keras.optimizers.Optimizer:
    require(
        opt.schedule in ("constant", "cosine"),
        f"unknown optimizer.schedule '{opt.schedule}'; valid: constant, cosine",
    )
    rate = float(opt.learning_rate)
    if opt.schedule == "cosine":  # with warm-up: a linear rise to the peak rate, then the cosine down to 0
        fraction = float(opt.get("warmup_fraction", 0))
        require(0 <= fraction < 1, f"optimizer.warmup_fraction must be in [0, 1), got {fraction}")
        warmup = int(fraction * total_steps)
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else rate, decay_steps=max(total_steps - warmup, 1),
            warmup_target=rate if warmup else None, warmup_steps=warmup,
        )
    try:
        cls = type(keras.optimizers.get(str(opt.name)))
        return cls(learning_rate=rate, **OmegaConf.to_container(opt.params))
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad optimizer '{opt.name}': {keras_message(exc)}") from None


class EpochMetrics(keras.callbacks.Callback):
    """One MLflow point per epoch (step = epoch number): train_* and validation_* metrics."""

    def on_epoch_end(self, epoch, logs=None):
        metrics = {}
        for key, value in (logs or {}).items():
            if key.startswith("val_"):
                key = "validation_" + key.removeprefix("val_")
            else:
                key = "train_" + key
            metrics[key] = float(value)
        # the rate the schedule reached by the end of this epoch
        metrics["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        mlflow.log_metrics(metrics, step=epoch + 1)


class TestCurve(keras.callbacks.Callback):
    """eval.test_every: a copy of the weights every N epochs, evaluated after training (benchmarks only)."""

    def __init__(self, curve: recipe.TestCurve, batch_size: int):
        super().__init__()
        self.curve, self.batch_size = curve, batch_size

    def on_epoch_end(self, epoch, logs=None):
        if self.curve.due(epoch + 1):
            self.curve.snapshot(epoch + 1, self.model.get_weights)

    def on_train_end(self, logs=None):
        final = self.model.get_weights()

        def predict_at(weights, X):
            self.model.set_weights(weights)
            return self.model.predict(batches(X, batch_size=self.batch_size), verbose=0)

        self.curve.finish(predict_at)
        self.model.set_weights(final)


def fit(cfg, ds) -> recipe.Trained:
    t = cfg.train
    require(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
    require(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
    require(t.steps_per_execution >= 1, f"train.steps_per_execution must be >= 1, got {t.steps_per_execution}")
    smoothing = float(cfg.arch.get("label_smoothing", 0))
    require(0 <= smoothing < 1, f"arch.label_smoothing must be in [0, 1), got {smoothing}")
    keras.utils.set_random_seed(cfg.seed)  # Python, NumPy and TensorFlow in one call

    X_train, X_val = flat_float(ds.X_train), flat_float(ds.X_val)
    model = build(cfg.arch, X_train.shape[1], ds.num_classes)
    epochs, batch_size = int(t.epochs), int(t.batch_size)
    steps_per_epoch = math.ceil(len(X_train) / batch_size)
    # Keras smooths one-hot labels only: with smoothing the labels go in one-hot
    y_train, y_val, loss = ds.y_train, ds.y_val, "sparse_categorical_crossentropy"
    if smoothing:
        y_train, y_val = (keras.utils.to_categorical(y, ds.num_classes) for y in (y_train, y_val))
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    curve = recipe.TestCurve(cfg, ds, prepare=flat_float)  # its clock starts with the model
    model.compile(
        optimizer=optimizer(cfg.optimizer, epochs * steps_per_epoch),
        loss=loss,
        metrics=["accuracy"],
        # never more than an epoch: a 1-step epoch (a tiny run) then skips tracing Keras' multi-step loop
        steps_per_execution=min(int(t.steps_per_execution), steps_per_epoch),
    )
    summary = []
    model.summary(print_fn=lambda line, *a, **k: summary.append(line))
    mlflow.log_text("\n".join(summary), "model_summary.txt")

    model.fit(
        batches(X_train, y_train, batch_size=batch_size, seed=cfg.seed),
        validation_data=batches(X_val, y_val, batch_size=int(t.predict_batch_size)),
        epochs=epochs,
        shuffle=False,  # the pipeline shuffles
        callbacks=[EpochMetrics(), *pruning.callbacks("keras"),  # pruning: inside a sweep only
                   *([TestCurve(curve, int(t.predict_batch_size))] if curve.every else [])],
        verbose=1 if sys.stdout.isatty() else 2,  # progress bar on a terminal, a line per epoch in logs
    )
    # MLflow predicts on the input example when logging the model; keep Keras' bars out of it.
    keras.utils.disable_interactive_logging()

    return recipe.Trained(
        prepare=flat_float,
        predict=lambda X: model.predict(batches(X, batch_size=int(t.predict_batch_size)), verbose=0),
        # mlflow.keras.log_model fails with an input example (mlflow#16183); the tensorflow
        # flavor saves the same .keras file and loads it back through mlflow.pyfunc.
        log_model=lambda **kw: mlflow.tensorflow.log_model(model, **kw),
        requirements=(recipe.installed_distribution("tensorflow-cpu", "tensorflow"), "numpy"),
    )


if __name__ == "__main__":
    recipe.main(__file__, fit)
