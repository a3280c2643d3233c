"""`value_and_grad` on the TensorFlow backend."""

import tensorflow as tf


def value_and_grad(loss_fn, variables):
    with tf.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(
        loss,
        [v.value for v in variables],
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return loss, grads
