"""XGBoost with the library's defaults (XGBClassifier()), the whole training set, no early stopping."""

import numpy as np
import xgboost as xgb
from _common import Curve, load

EVERY = 5  # rounds between test evaluations (the same for ours in the benchmark)


class TestCurve(xgb.callback.TrainingCallback):
    def __init__(self, curve, X, y):
        super().__init__()
        self.curve, self.dtest, self.y = curve, xgb.DMatrix(X), y

    def after_iteration(self, model, epoch, evals_log):
        if (epoch + 1) % EVERY == 0:
            self.curve.record(epoch + 1, lambda: (model.predict(self.dtest).argmax(1) == self.y).mean())
        return False


(x_train, y_train), (x_test, y_test) = load()
X_train = x_train.reshape(len(x_train), -1).astype(np.float32)
X_test = x_test.reshape(len(x_test), -1).astype(np.float32)
curve = Curve()
model = xgb.XGBClassifier(callbacks=[TestCurve(curve, X_test, y_test)])
model.fit(X_train, y_train)
print(f"final test accuracy {(model.predict(X_test) == y_test).mean():.4f}")
