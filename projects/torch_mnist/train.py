"""PyTorch MLP and CNN on the shared recipe: only the model and its training loop live here."""

# First: mlrecipes sets what mlflow's pyarrow and torch read when they load (Arrow's allocator,
# OpenMP's waits at barriers).
import mlrecipes  # noqa: F401

# isort: split
import math
import os
import sys
import time

import mlflow
import models
import numpy as np
import torch
import torch._dynamo  # noqa: F401  torch.optim imports it on first use (~1 s): an import, not training time
import torch.nn.functional as F

from mlrecipes import recipe
from mlrecipes.data import flat_float
from mlrecipes.errors import require
from mlrecipes.sweep import pruning

DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str) -> torch.device:
    require(name in DEVICES, f"unknown device '{name}'; valid: {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    require(name == "cpu" or torch.cuda.is_available(), "device=cuda but CUDA is not available; use auto or cpu")
    return torch.device(name)


PRECISIONS = ("auto", "float32", "bfloat16")
CPU_BF16 = {"avx512_bf16", "amx_bf16"}  # /proc/cpuinfo flags of CPUs that compute bfloat16 natively


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast of the training steps, or None (float32).

    auto: bfloat16 where the hardware computes it natively (CUDA with bf16 support; a CPU with
    AVX-512 BF16 or AMX: measured 1.2x faster epochs for the CNN at the same accuracy on
    this project's AMD EPYC), float32 elsewhere: emulated bf16 is slower than float32.
    Evaluation, the test curve and the logged model stay float32.
    """
    require(name in PRECISIONS, f"unknown precision '{name}'; valid: {', '.join(PRECISIONS)}")
    if name == "auto":
        native = (torch.cuda.is_bf16_supported() if device.type == "cuda"
                  else bool(CPU_BF16 & set(cpu_flags())))
        name = "bfloat16" if native else "float32"
    return torch.bfloat16 if name == "bfloat16" else None


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:  # not Linux: no autocast unless asked for
        return []


def make_augment(aug):
    """Random rotation / shift / zoom of each training image (models.random_affine); None: off.

    Checked here, in one line: with the default null, composing the config has no default whose shape
    an override (`arch.augment=5`, a key missing) must keep."""
    if not aug:
        return lambda x: x
    try:
        unknown = set(aug) - {"degrees", "translate", "scale"}
        degrees, translate = float(aug["degrees"]), float(aug["translate"])
        scale = tuple(float(s) for s in aug["scale"])
    except (TypeError, KeyError, ValueError):
        unknown, scale = None, ()
    require(unknown == set() and len(scale) == 2,
            f"arch.augment must be null or {{degrees: D, translate: T, scale: [LOW, HIGH]}}, got {aug}")
    return lambda x: models.random_affine(x, degrees, translate, scale)


def as_images(X: np.ndarray, device) -> torch.Tensor:
    """uint8 (n, 28, 28) -> uint8 (n, 1, 28, 28) on the device; batches turn float when sliced."""
    return torch.from_numpy(np.ascontiguousarray(X)).unsqueeze(1).to(device)


def as_float(images: torch.Tensor, memory_format) -> torch.Tensor:
    return images.float().div_(255).contiguous(memory_format=memory_format)


@torch.no_grad()
def loss_and_accuracy(net, X, y, batch_size: int, memory_format) -> tuple[float, float]:
    net.eval()
    loss = correct = 0.0
    for start in range(0, len(y), batch_size):
        logits = net(as_float(X[start : start + batch_size], memory_format))
        target = y[start : start + batch_size]
        loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    return loss / len(y), correct / len(y)


@torch.no_grad()
def scores(net, X, batch_size: int, memory_format) -> np.ndarray:
    net.eval()
    out = [net(as_float(X[s : s + batch_size], memory_format)) for s in range(0, len(X), batch_size)]
    return torch.cat(out).cpu().numpy()


def fit(cfg, ds) -> recipe.Trained:
    device = pick_device(str(cfg.device))
    t, arch = cfg.train, cfg.arch
    require(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
    require(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
    require(t.learning_rate > 0, f"train.learning_rate must be > 0, got {t.learning_rate}")
    require(0 <= arch.dropout < 1, f"arch.dropout must be in [0, 1), got {arch.dropout}")
    torch.set_num_threads(int(cfg.threads) or len(os.sched_getaffinity(0)))
    # Same seed, config and machine -> same weights: seeded RNGs, deterministic kernels.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(int(cfg.seed))
    shuffle = torch.Generator().manual_seed(int(cfg.seed))

    # The whole split lives on the device as uint8 (47 MB for MNIST); batches are index slices.
    X_train, y_train = as_images(ds.X_train, device), torch.from_numpy(ds.y_train).to(device)
    X_val, y_val = as_images(ds.X_val, device), torch.from_numpy(ds.y_val).to(device)
    curve = recipe.TestCurve(cfg, ds, prepare=lambda X: as_images(X, device))  # its clock starts with the model

    # channels_last lets oneDNN (CPU) and cuDNN pick their fastest convolution kernels.
    memory_format = torch.channels_last if arch.name == "cnn" else torch.contiguous_format
    net = models.build(arch).to(device, memory_format=memory_format)

    def weights_copy() -> dict:  # the test curve's snapshots (eval.test_every)
        return {k: v.detach().clone() for k, v in net.state_dict().items()}

    n, epochs = len(y_train), int(t.epochs)
    # Tiny sets (smoke tests, limit=300): smaller batches so the one-cycle schedule gets >= 4 steps.
    batch = max(min(int(t.batch_size), n // math.ceil(4 / epochs)), 1)
    steps = n // batch  # each epoch reshuffles, so dropping the last partial batch loses nothing
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=float(t.learning_rate), weight_decay=float(arch.optimizer.weight_decay)
    )
    total = epochs * steps
    require(total >= 4, f"{epochs} epoch(s) x {steps} step(s) is too short for the one-cycle schedule: "
            "train longer or lower train.batch_size")
    # OneCycleLR divides by the length of each phase: keep the warm-up >= 2 steps on tiny runs.
    warmup = min(max(float(arch.schedule.warmup_fraction), 2 / total), 0.5)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=float(t.learning_rate), total_steps=total, pct_start=warmup
    )
    augment = make_augment(arch.augment)
    dtype = autocast_dtype(str(cfg.precision), device)
    tty = sys.stdout.isatty()
    tag = f"[{cfg.project}:{cfg.variant}]"
    print(f"{tag} {sum(p.numel() for p in net.parameters()):,} parameters on {device}, "
          f"{epochs} epochs x {steps} steps of {batch}, {'bfloat16 autocast' if dtype else 'float32'}", flush=True)

    prune = pruning.callbacks("pytorch")  # inside a sweep only: report epochs, prune
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(n, generator=shuffle).to(device)
        loss_sum = torch.zeros((), device=device)  # summed on the device: no host sync per step
        correct = torch.zeros((), device=device)
        for step in range(steps):
            idx = order[step * batch : (step + 1) * batch]
            x = augment(as_float(X_train[idx], memory_format))
            target = y_train[idx]
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = net(x)
                loss = F.cross_entropy(logits, target, label_smoothing=float(t.label_smoothing))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach() * batch
            correct += (logits.argmax(1) == target).sum()
            if tty and (step % 20 == 0 or step == steps - 1):
                print(f"\r{tag} epoch {epoch}/{epochs} step {step + 1}/{steps} loss {loss.item():.4f}",
                      end="", flush=True)
        val_loss, val_accuracy = loss_and_accuracy(net, X_val, y_val, int(t.eval_batch_size), memory_format)
        metrics = {
            "train_loss": loss_sum.item() / (steps * batch),
            "train_accuracy": correct.item() / (steps * batch),
            "validation_loss": val_loss,
            "validation_accuracy": val_accuracy,
        }
        mlflow.log_metrics(metrics, step=epoch)
        if curve.due(epoch):  # eval.test_every (benchmarks only; off by default)
            curve.snapshot(epoch, weights_copy)
        print(f"{chr(13) + chr(27) + '[K' if tty else ''}{tag} epoch {epoch}/{epochs} "
              f"train loss {metrics['train_loss']:.4f} acc {metrics['train_accuracy']:.4f} | "
              f"validation loss {val_loss:.4f} acc {val_accuracy:.4f} | "
              f"{time.perf_counter() - started:.1f}s", flush=True)
        for report in prune:
            report(epoch, val_loss)

    if curve.every:  # each snapshot's test accuracy, then the final weights back
        def scores_at(state, X):
            net.load_state_dict(state)
            return scores(net, X, int(t.eval_batch_size), memory_format)

        final = weights_copy()
        curve.finish(scores_at)
        net.load_state_dict(final)
    model = models.Probabilities(net).eval()

    @torch.no_grad()
    def predict_proba(X: np.ndarray) -> np.ndarray:
        x, size = torch.from_numpy(X).to(device), int(t.eval_batch_size)
        return torch.cat([model(x[s : s + size]) for s in range(0, len(x), size)]).cpu().numpy()

    def log_model(**kw):
        # pt2 (torch.export; MLflow's default): one self-contained graph that pyfunc loads without
        # this project's code and without unpickling; on the CPU, so it serves anywhere.
        model.to("cpu", memory_format=torch.contiguous_format)
        return mlflow.pytorch.log_model(model, serialization_format="pt2", **kw)

    return recipe.Trained(prepare=flat_float, predict=predict_proba, log_model=log_model,
                          requirements=("torch", "numpy", "cloudpickle", "pandas"))


if __name__ == "__main__":
    recipe.main(__file__, fit)
