"""PyTorch MLP and CNN on the shared recipe: only the model and its training loop live here."""

import os
import sys
import time

import mlflow
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

import models
from mlrecipes import recipe
from mlrecipes.data import flat_float
from mlrecipes.errors import require

DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str) -> torch.device:
    require(name in DEVICES, f"unknown device '{name}'; valid: {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    require(name == "cpu" or torch.cuda.is_available(), "device=cuda but no CUDA device is available; use device=auto or cpu")
    return torch.device(name)


def make_augment(aug):
    """torchvision's RandomAffine on batched tensors; each group of images gets its own draw."""
    if not aug:
        return lambda x: x
    affine = v2.RandomAffine(
        degrees=float(aug.degrees),
        translate=(float(aug.translate),) * 2,
        scale=tuple(aug.scale),
        interpolation=v2.InterpolationMode.BILINEAR,
    )
    return lambda x: torch.cat([affine(group) for group in x.split(int(aug.group_size))])


def images(X: np.ndarray, device) -> torch.Tensor:
    """uint8 (n, 28, 28) -> uint8 (n, 1, 28, 28) on the device; batches become float on the fly."""
    return torch.from_numpy(np.ascontiguousarray(X)).unsqueeze(1).to(device)


@torch.no_grad()
def evaluate(net, X: torch.Tensor, y: torch.Tensor, batch_size: int, memory_format) -> tuple[float, float]:
    net.eval()
    loss = correct = 0.0
    for start in range(0, len(y), batch_size):
        x = X[start : start + batch_size].float().div_(255).contiguous(memory_format=memory_format)
        logits = net(x)
        target = y[start : start + batch_size]
        loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    return loss / len(y), correct / len(y)


def fit(cfg, ds) -> recipe.Trained:
    device = pick_device(str(cfg.device))
    t = cfg.arch.train
    require(t.epochs >= 1, f"arch.train.epochs must be >= 1, got {t.epochs}")
    require(t.batch_size >= 1, f"arch.train.batch_size must be >= 1, got {t.batch_size}")
    require(t.learning_rate > 0, f"arch.train.learning_rate must be > 0, got {t.learning_rate}")
    torch.set_num_threads(int(cfg.threads) or len(os.sched_getaffinity(0)))
    # Same seed, same config, same machine -> same weights: fixed RNGs and deterministic kernels.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(int(cfg.seed))
    order_rng = torch.Generator().manual_seed(int(cfg.seed))

    net = models.build(cfg.arch).to(device)
    # channels_last lets oneDNN (CPU) and cuDNN pick their fastest convolution kernels.
    memory_format = torch.channels_last if cfg.arch.name == "cnn" else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    X_train, y_train = images(ds.X_train, device), torch.from_numpy(ds.y_train).to(device)
    X_val, y_val = images(ds.X_val, device), torch.from_numpy(ds.y_val).to(device)
    n, batch = len(y_train), min(int(t.batch_size), len(y_train))
    steps = n // batch  # the last partial batch is dropped: each epoch reshuffles
    epochs = int(t.epochs)
    optimizer = torch.optim.AdamW(net.parameters(), lr=float(t.learning_rate), weight_decay=float(t.weight_decay))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=float(t.learning_rate), total_steps=epochs * steps, pct_start=float(t.warmup_fraction)
    )
    augment = make_augment(t.get("augment"))
    tty = sys.stdout.isatty()
    tag = f"[{cfg.project}:{cfg.variant}]"
    print(f"{tag} {sum(p.numel() for p in net.parameters()):,} parameters on {device}, "
          f"{epochs} epochs x {steps} steps of {batch}", flush=True)

    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(n, generator=order_rng).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for step in range(steps):
            idx = order[step * batch : (step + 1) * batch]
            x = augment(X_train[idx].float().div_(255)).contiguous(memory_format=memory_format)
            target = y_train[idx]
            logits = net(x)
            loss = F.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            # Accumulate on the device: no host sync per step.
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == target).sum()
            if tty and (step % 20 == 0 or step == steps - 1):
                print(f"\r{tag} epoch {epoch}/{epochs} step {step + 1}/{steps} "
                      f"loss {loss.item():.4f}", end="", flush=True)
        seen = steps * batch
        val_loss, val_acc = evaluate(net, X_val, y_val, int(t.eval_batch_size), memory_format)
        metrics = {
            "train_loss": loss_sum.item() / seen,
            "train_accuracy": correct.item() / seen,
            "validation_loss": val_loss,
            "validation_accuracy": val_acc,
        }
        mlflow.log_metrics(metrics, step=epoch)
        print(f"{chr(13) if tty else ''}{tag} epoch {epoch}/{epochs} "
              f"train loss {metrics['train_loss']:.4f} acc {metrics['train_accuracy']:.4f} | "
              f"validation loss {val_loss:.4f} acc {val_acc:.4f} | {time.perf_counter() - started:.1f}s",
              flush=True)

    net.eval()
    model = models.Probabilities(net).eval()

    @torch.no_grad()
    def predict_proba(X: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(X).to(device)
        size = int(t.eval_batch_size)
        return torch.cat([model(x[s : s + size]) for s in range(0, len(x), size)]).cpu().numpy()

    def log_model(**kw):
        # pt2 (torch.export, MLflow's default): a self-contained graph that loads without this
        # project's code or pickle; CPU + contiguous so it loads and serves anywhere.
        cpu = models.Probabilities(net.to("cpu", memory_format=torch.contiguous_format)).eval()
        return mlflow.pytorch.log_model(cpu, serialization_format="pt2", **kw)

    return recipe.Trained(prepare=flat_float, predict_proba=predict_proba, log_model=log_model)


if __name__ == "__main__":
    recipe.main(__file__, fit)
