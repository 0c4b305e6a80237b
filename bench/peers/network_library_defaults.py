"""The project's network trained with the library's own defaults, for a budget of CPU seconds.

    <project env python> bench/peers/network_library_defaults.py PROJECT SET DATA_DIR ARCH CPU_SECONDS

What stays ours: the network (tf_mnist's `build` of conf/arch/<arch>.yaml, torch_mnist's `models.build`)
and the data (the run's own split, read by the data package: same training and validation images).
What is the library's: Adam at its default rate (1e-3), constant; batch size 32 (Keras' `fit`
default; PyTorch has none); plain cross-entropy (no label smoothing, no weight decay); no
augmentation (tf_mnist's augmentation layers are dropped from the network; torch_mnist's is in its
training loop). Training stops after the batch at which this process's CPU time (all threads) since
the model was built reaches CPU_SECONDS. Prints one JSON line: validation accuracy, epochs, seconds.
"""

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
project, set_name, data_dir, arch_name, budget = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
sys.path[:0] = [str(REPO / "projects" / project), str(REPO / "src")]

import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import mlrecipes  # noqa: E402,F401  (the same runtime settings as a run)
from mlrecipes import config, data  # noqa: E402

BATCH = 32
AUGMENTATION = ("RandomTranslation", "RandomRotation", "RandomZoom", "RandomFlip", "RandomContrast")
cfg = config.compose(REPO / "projects" / project, [f"data={set_name}", f"data.dir={data_dir}", f"arch={arch_name}"])
ds = data.load(cfg.data)
seed = int(cfg.seed)


def tf_peer():
    import keras
    import train

    arch = OmegaConf.to_container(cfg.arch)
    arch["layers"] = [layer for layer in arch["layers"] if layer.get("layer") not in AUGMENTATION]
    keras.utils.set_random_seed(seed)
    X_train, X_val = data.flat_float(ds.X_train), data.flat_float(ds.X_val)
    started = time.process_time()
    model = train.build(OmegaConf.create(arch), X_train.shape[1], ds.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class Budget(keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            Budget.batches += 1
            if time.process_time() - started >= budget:
                self.model.stop_training = True

    model.fit(X_train, ds.y_train, batch_size=BATCH, epochs=10_000, callbacks=[Budget()], verbose=0)
    cpu = time.process_time() - started
    accuracy = float((model.predict(X_val, batch_size=1000, verbose=0).argmax(1) == ds.y_val).mean())
    return accuracy, Budget.batches, cpu


def torch_peer():
    import models
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(seed)
    images = torch.from_numpy(np.ascontiguousarray(ds.X_train)).unsqueeze(1)
    labels = torch.from_numpy(ds.y_train)
    started = time.process_time()
    net = models.build(cfg.arch)
    optimizer = torch.optim.Adam(net.parameters())
    shuffle = torch.Generator().manual_seed(seed)
    batches = 0
    while time.process_time() - started < budget:
        net.train()
        order = torch.randperm(len(labels), generator=shuffle)
        for start in range(0, len(labels), BATCH):
            idx = order[start:start + BATCH]
            loss = F.cross_entropy(net(images[idx].float().div_(255)), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            batches += 1
            if time.process_time() - started >= budget:
                break
    cpu = time.process_time() - started
    net.eval()
    with torch.no_grad():
        val = torch.from_numpy(np.ascontiguousarray(ds.X_val)).unsqueeze(1)
        predicted = torch.cat([net(val[s:s + 1000].float().div_(255)).argmax(1) for s in range(0, len(val), 1000)])
    return float((predicted.numpy() == ds.y_val).mean()), batches, cpu


wall = time.perf_counter()
accuracy, batches, cpu = {"tf_mnist": tf_peer, "torch_mnist": torch_peer}[project]()
print(json.dumps({"val_accuracy": round(accuracy, 4), "epochs": round(batches * BATCH / len(ds.y_train), 2),
                  "cpu_seconds": round(cpu, 1), "wall_seconds": round(time.perf_counter() - wall, 1),
                  "train_images": len(ds.y_train), "val_images": len(ds.y_val)}))
