"""LightGBM with the library's defaults (LGBMClassifier()), the whole training set, no early stopping."""

import lightgbm as lgb
import numpy as np
from _common import Curve, load

EVERY = 5  # rounds between test evaluations (the same for ours in the benchmark)

(x_train, y_train), (x_test, y_test) = load()
X_train = x_train.reshape(len(x_train), -1).astype(np.float32)
X_test = x_test.reshape(len(x_test), -1).astype(np.float32)
curve = Curve()


def test_curve(env):
    if (env.iteration + 1) % EVERY == 0:
        curve.snapshot(env.iteration + 1)


model = lgb.LGBMClassifier()
model.fit(X_train, y_train, callbacks=[test_curve])
curve.finish(lambda rounds: (model.predict(X_test, num_iteration=rounds) == y_test).mean())
print(f"final test accuracy {(model.predict(X_test) == y_test).mean():.4f}")
