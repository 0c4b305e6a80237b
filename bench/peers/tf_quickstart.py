"""TensorFlow 2 quickstart for beginners (tensorflow.org/tutorials/quickstart/beginner), as published."""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # the same runtime setting as our tf_mnist project

import tensorflow as tf  # noqa: E402
from _common import Curve, load  # noqa: E402

(x_train, y_train), (x_test, y_test) = load()
x_train, x_test = x_train / 255.0, x_test / 255.0

curve = Curve()
model = tf.keras.models.Sequential([
  tf.keras.layers.Flatten(input_shape=(28, 28)),
  tf.keras.layers.Dense(128, activation='relu'),
  tf.keras.layers.Dropout(0.2),
  tf.keras.layers.Dense(10)
])

loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
model.compile(optimizer='adam',
              loss=loss_fn,
              metrics=['accuracy'])


class TestCurve(tf.keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        curve.snapshot(epoch + 1, self.model.get_weights)


model.fit(x_train, y_train, epochs=5, verbose=2, callbacks=[TestCurve()])
curve.finish_keras(model, x_test, y_test)

model.evaluate(x_test,  y_test, verbose=2)
