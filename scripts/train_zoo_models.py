"""Train the zoo models (keras_sagdq/models/zoo.py) on the Fashion-MNIST training split.

    KERAS_BACKEND=tensorflow python scripts/train_zoo_models.py
    KERAS_BACKEND=tensorflow python scripts/train_zoo_models.py --models=vgg_raw_pixels

Another recipe than the reference models on purpose: Adam with cosine decay,
random horizontal flips only, a seed per model. Each model sees the training
images in its own input convention. Models with `reestimate_bn` get their
BatchNorm statistics recomputed on 10 000 training images after training.
Prints the test accuracy and the training time, and saves
`keras_sagdq/models/zoo/<name>.keras`.
"""

import os
import time

import keras
from absl import app
from absl import flags

from keras_sagdq.datasets import AugmentedBatches
from keras_sagdq.datasets import load_fashion_mnist
from keras_sagdq.models import zoo

_MODELS = flags.DEFINE_list("models", list(zoo.ZOO_MODELS), "Zoo models to train.")
_EPOCHS = flags.DEFINE_integer("epochs", 4, "Training epochs.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 2e-3, "Peak Adam learning rate.")
_LIMIT = flags.DEFINE_integer(
    "limit", 0, "Train on the first N images only (0: all); for timing."
)


def train(name, seed):
    entry = zoo.ZOO[name]
    keras.utils.set_random_seed(seed)
    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    if _LIMIT.value:
        x_train, y_train = x_train[: _LIMIT.value], y_train[: _LIMIT.value]
    x_train, x_test = (
        zoo.to_model_input(x_train, name),
        zoo.to_model_input(x_test, name),
    )
    model = entry.builder(momentum=entry.bn_momentum)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            # Adapted to what the layer sees: behind a Rescaling that is not
            # the model input (efficientnet_style's file predates this and
            # declares a space 255x too wide; synthesis now warns about it).
            seen = keras.Model(model.inputs, layer.input)
            layer.adapt(seen.predict(x_train[:10000], batch_size=500, verbose=0))
    # Flips only: a shift would pad with 0, which is not the background in
    # every input convention.
    batches = AugmentedBatches(x_train, y_train, _BATCH_SIZE.value, seed, max_shift=0)
    schedule = keras.optimizers.schedules.CosineDecay(
        _LEARNING_RATE.value, decay_steps=_EPOCHS.value * len(batches)
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.time()
    model.fit(batches, epochs=_EPOCHS.value, verbose=2)
    if entry.reestimate_bn:
        zoo.reestimate_batchnorm(model, x_train[:10000])
    seconds = time.time() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=500, verbose=0)
    path = zoo.zoo_model_path(name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # A fresh copy: the file carries the weights, not the optimizer state.
    shipped = entry.builder(momentum=entry.bn_momentum)
    shipped.set_weights(model.get_weights())
    shipped.save(path)
    print(
        f"{name}: test accuracy {accuracy:.4f}, {_EPOCHS.value} epochs in "
        f"{seconds / 60:.1f} min on backend {keras.backend.backend()}; saved {path} "
        f"({os.path.getsize(path) / 1e6:.2f} MB)",
        flush=True,
    )


def main(argv):
    del argv
    for name in _MODELS.value:
        train(name, seed=100 + zoo.ZOO_MODELS.index(name))


if __name__ == "__main__":
    app.run(main)
