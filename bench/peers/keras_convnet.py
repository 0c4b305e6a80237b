"""Keras' "Simple MNIST convnet" (keras.io/examples/vision/mnist_convnet), as published."""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # the same runtime setting as our tf_mnist project

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import Curve, load  # noqa: E402

EPOCHS = int(os.environ.get("PEER_EPOCHS", 15))

# Model / data parameters
num_classes = 10
input_shape = (28, 28, 1)

# Load the data and split it between train and test sets
(x_train, y_train), (x_test, y_test) = load()

# Scale images to the [0, 1] range
x_train = x_train.astype("float32") / 255
x_test = x_test.astype("float32") / 255
# Make sure images have shape (28, 28, 1)
x_train = np.expand_dims(x_train, -1)
x_test = np.expand_dims(x_test, -1)

# convert class vectors to binary class matrices
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

curve = Curve()
model = keras.Sequential(
    [
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(num_classes, activation="softmax"),
    ]
)


class TestCurve(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        curve.snapshot(epoch + 1, self.model.get_weights)


batch_size = 128
epochs = EPOCHS

model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, validation_split=0.1, verbose=2,
          callbacks=[TestCurve()])
curve.finish_keras(model, x_test, y_test)

score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
