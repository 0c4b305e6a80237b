"""The torch_mnist CNN's training loop without MLflow or Hydra: for the GPU check and quick sweeps.

    python bench/torch_cnn_standalone.py --device cuda --epochs 8 --batch-size 512 --lr 0.004

Same net (projects/torch_mnist/models.py, built from conf/arch/<arch>.yaml, the arch's optimizer,
schedule and augmentation) and the same loop as train.py: the whole training set resident on the
device as uint8, batches as index slices, AdamW + one-cycle. Trains on all 60,000 training images
(the project holds 10,000 back for validation) and prints test accuracy after every epoch against
the training seconds so far (evaluation left out), one `CURVE {json}` line each.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "1000")  # as src/mlrecipes/__init__.py sets it for the projects

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "projects" / "torch_mnist"))
import models  # noqa: E402


class Cfg(dict):  # attribute access, as the OmegaConf config gives models.build
    def __getattr__(self, key):
        value = self[key]
        return Cfg(value) if isinstance(value, dict) else value


def idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("MLRECIPES_DATA_DIR", "") + "/mnist")
    ap.add_argument("--arch", default="cnn")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--set", nargs="*", default=[], help="arch overrides: key=yaml-value, e.g. channels=[16,32]")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward pass")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--cudnn-benchmark", action="store_true", help="autotune convolutions (costs seconds at start)")
    args = ap.parse_args()
    arch = yaml.safe_load((REPO / "projects/torch_mnist/conf/arch" / f"{args.arch}.yaml").read_text())
    for item in args.set:
        key, value = item.split("=", 1)
        arch[key] = yaml.safe_load(value)
    arch = Cfg(arch)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    data = Path(args.data)
    X = torch.from_numpy(idx(data / "train-images-idx3-ubyte.gz").copy()).unsqueeze(1).to(device)
    y = torch.from_numpy(idx(data / "train-labels-idx1-ubyte.gz").astype(np.int64)).to(device)
    Xt = torch.from_numpy(idx(data / "t10k-images-idx3-ubyte.gz").copy()).unsqueeze(1).to(device)
    yt = torch.from_numpy(idx(data / "t10k-labels-idx1-ubyte.gz").astype(np.int64)).to(device)
    fmt = torch.channels_last if arch.name == "cnn" else torch.contiguous_format

    def as_float(images):
        return images.float().div_(255).contiguous(memory_format=fmt)

    if device.type == "cuda":  # warm the CUDA context and cuDNN outside the clock, as a resident service would be
        torch.zeros(1, device=device).sum().item()
    started = time.perf_counter()
    net = models.build(arch).to(device, memory_format=fmt)
    n, batch = len(y), args.batch_size
    steps = n // batch
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=float(arch.optimizer["weight_decay"]))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps,
                                                pct_start=float(arch.schedule["warmup_fraction"]))
    aug = None if args.no_augment else arch.get("augment")
    if args.threads:
        torch.set_num_threads(args.threads)
    shuffle = torch.Generator().manual_seed(args.seed)
    paused, best = 0.0, 0.0
    for epoch in range(1, args.epochs + 1):
        net.train()
        order = torch.randperm(n, generator=shuffle).to(device)
        for step in range(steps):
            idx_ = order[step * batch : (step + 1) * batch]
            x = as_float(X[idx_])
            if aug:
                x = models.random_affine(x, float(aug["degrees"]), float(aug["translate"]), tuple(aug["scale"]))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss = F.cross_entropy(net(x), y[idx_], label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        net.eval()
        with torch.no_grad():
            correct = sum((net(as_float(Xt[s : s + 2000])).argmax(1) == yt[s : s + 2000]).sum().item()
                          for s in range(0, len(yt), 2000))
        acc = correct / len(yt)
        best = max(best, acc)
        train_s = t0 - started - paused
        print("CURVE " + json.dumps({"step": epoch, "seconds": round(train_s, 3), "test_accuracy": acc,
                                     "cpu_seconds": round(time.process_time(), 1)}), flush=True)
        paused += time.perf_counter() - t0
    print(json.dumps({"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                      "torch": torch.__version__, "arch": dict(arch), "epochs": args.epochs, "batch_size": batch,
                      "lr": args.lr, "final_test_accuracy": acc, "train_seconds": round(train_s, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
