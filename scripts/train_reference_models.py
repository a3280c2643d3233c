"""Train the reference models shipped in keras_sagdq/models/ (Fashion-MNIST).

    KERAS_BACKEND=tensorflow python scripts/train_reference_models.py --model=resnet20

Fixed seed; flips and +-2 pixel shifts as augmentation; SGD with Nesterov
momentum, cosine decay and weight decay. Prints the test accuracy and the
training time, and saves `<output_dir>/<model>_fashion_mnist.keras`.
"""

import os
import time

import keras
from absl import app
from absl import flags

from keras_sagdq.datasets import AugmentedBatches
from keras_sagdq.datasets import load_fashion_mnist
from keras_sagdq.models import architectures

_MODEL = flags.DEFINE_enum(
    "model", "resnet20", ["resnet20", "mobilenet_v2"], "Which model."
)
_EPOCHS = flags.DEFINE_integer("epochs", 15, "Training epochs.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.1, "Peak SGD learning rate.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_LIMIT = flags.DEFINE_integer(
    "limit", 0, "Train on the first N images only (0: all); for timing."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    os.path.join(os.path.dirname(__file__), "..", "keras_sagdq", "models"),
    "Where to save the .keras file.",
)


def main(argv):
    del argv
    keras.utils.set_random_seed(_SEED.value)
    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    if _LIMIT.value:
        x_train, y_train = x_train[: _LIMIT.value], y_train[: _LIMIT.value]
    model = getattr(architectures, _MODEL.value)()
    batches = AugmentedBatches(
        x_train, y_train, _BATCH_SIZE.value, _SEED.value, max_shift=2
    )
    schedule = keras.optimizers.schedules.CosineDecay(
        _LEARNING_RATE.value, decay_steps=_EPOCHS.value * len(batches)
    )
    model.compile(
        optimizer=keras.optimizers.SGD(
            schedule, momentum=0.9, nesterov=True, weight_decay=5e-4
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.time()
    model.fit(batches, epochs=_EPOCHS.value, verbose=2)
    seconds = time.time() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=500, verbose=0)
    path = os.path.join(_OUTPUT_DIR.value, f"{_MODEL.value}_fashion_mnist.keras")
    # Save a fresh copy: the file carries the weights, not the optimizer state.
    shipped = getattr(architectures, _MODEL.value)()
    shipped.set_weights(model.get_weights())
    shipped.save(path)
    print(
        f"{_MODEL.value}: test accuracy {accuracy:.4f}, {_EPOCHS.value} epochs in "
        f"{seconds / 60:.1f} min on backend {keras.backend.backend()}; saved {path} "
        f"({os.path.getsize(path) / 1e6:.2f} MB)"
    )


if __name__ == "__main__":
    app.run(main)
