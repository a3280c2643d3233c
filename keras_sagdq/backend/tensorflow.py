"""The gradient seam and device choice on the TensorFlow backend."""

import contextlib

import keras
import tensorflow as tf

from keras_sagdq import private_api


def value_and_grad(loss_fn, variables):
    with tf.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(
        loss,
        [v.value for v in variables],
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return loss, grads


def traced(function):
    return tf.function(function, reduce_retracing=True)


def apply_gradients(optimizer, grads, variables):
    # Outside a tf.distribute strategy there is one replica: leave out the
    # all-reduce, whose traced form is never freed (see private_api).
    if not tf.distribute.has_strategy():
        private_api.skip_single_replica_all_reduce(optimizer)
    optimizer.apply(grads, variables)


def uniform_like(x, seed_generator):
    # Stateless draws from the seed: already cheap, and traced once.
    return keras.random.uniform(keras.ops.shape(x), seed=seed_generator)


def random_streams():
    return contextlib.nullcontext()


def use_local_accelerator(local_rank):
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    gpu = gpus[local_rank % len(gpus)]
    try:
        tf.config.set_visible_devices(gpu, "GPU")
    except RuntimeError as error:
        raise RuntimeError(
            f"TensorFlow's GPUs are already in use ({error}); choose the GPU "
            "before anything runs, or set CUDA_VISIBLE_DEVICES per process."
        ) from None
    return gpu.name
