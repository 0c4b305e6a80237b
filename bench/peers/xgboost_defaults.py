"""XGBoost with the library's defaults (XGBClassifier()), the whole training set, no early stopping."""

import numpy as np
import xgboost as xgb
from _common import Curve, load

EVERY = 5  # rounds between test evaluations (the same for ours in the benchmark)


class TestCurve(xgb.callback.TrainingCallback):
    def __init__(self, curve):
        super().__init__()
        self.curve = curve

    def after_iteration(self, model, epoch, evals_log):
        if (epoch + 1) % EVERY == 0:
            self.curve.snapshot(epoch + 1)
        return False


(x_train, y_train), (x_test, y_test) = load()
X_train = x_train.reshape(len(x_train), -1).astype(np.float32)
X_test = x_test.reshape(len(x_test), -1).astype(np.float32)
curve = Curve()
model = xgb.XGBClassifier(callbacks=[TestCurve(curve)])
model.fit(X_train, y_train)
curve.finish(lambda rounds: (model.predict(X_test, iteration_range=(0, rounds)) == y_test).mean())
print(f"final test accuracy {(model.predict(X_test) == y_test).mean():.4f}")
