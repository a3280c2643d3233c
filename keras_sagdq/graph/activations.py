"""Activation functions as an int8 runtime computes them.

An integer TFLite file rounds every tensor between two ops to int8. For
the Keras model to compute the file's integers, it must round at the same
places, which depend on how the converter lowers each activation (checked
op by op on TFLite 2.21, docs/deployment.md):

- relu, relu6: fused into the op before; no tensor of their own.
- GELU: one op whose int8 kernel maps each input integer to the correctly
  rounded output: a grid on each side. Its int8 kernel leaves XNNPACK.
- hard-swish: one op, HARD_SWISH, whose int8 kernel is off by one step on
  some inputs and leaves XNNPACK; written as `x * hard_sigmoid(x)` it is
  three int8 ops XNNPACK runs, each exactly reproduced.
- sigmoid, tanh: one op (LOGISTIC, TANH) whose output grid is fixed
  (steps of 1/256 from 0; 1/128 around 0); a different grid after it is a
  second rounding (a QUANTIZE op).
- hard-sigmoid: ADD 3 (with a fused RELU6), then MUL 1/6: two roundings.
- swish: LOGISTIC, then MUL by the input: the sigmoid is rounded to 1/256
  before the product.

`int8_activation` builds the Keras ops that round where the file rounds.
"""

import keras
from keras import ops

from keras_sagdq import private_api

A = keras.activations
# The grid TFLite's int8 kernel fixes for an activation's output:
# (signed, step). Its int8 zero point follows: -128 unsigned, 0 signed.
FIXED_GRIDS = {
    A.sigmoid: (False, 1.0 / 256),
    A.tanh: (True, 1.0 / 128),
}
# keras.ops nodes in a Functional graph that apply an activation.
_OPS = {
    "Sigmoid": A.sigmoid,
    "Tanh": A.tanh,
    "HardSigmoid": A.hard_sigmoid,
    "HardSilu": A.hard_silu,
    "Silu": A.silu,
    "Relu": A.relu,
    "Relu6": A.relu6,
}


def activation_function(layer):
    """The activation an `Activation` layer or a `keras.ops` node applies, or None."""
    if type(layer) is keras.layers.Activation:
        return layer.activation
    name = private_api.operation_name(layer)
    return _OPS.get(name)


def is_fusable(function):
    """True for activations an int8 op applies as a clamp of its output."""
    return function in (None, A.linear, A.relu, A.relu6)


def describe(function):
    """How the int8 file computes `function`, for the quantization report."""
    if function in FIXED_GRIDS:
        signed, step = FIXED_GRIDS[function]
        return f"output on TFLite's fixed grid (step 1/{round(1 / step)})"
    if function is A.hard_sigmoid:
        return "as TFLite computes it: relu6(x + 3) rounded, then times 1/6"
    if function is A.silu:
        return "as TFLite computes it: x times sigmoid(x) rounded to 1/256"
    if function is A.hard_silu:
        return "x times hard_sigmoid(x), three int8 ops XNNPACK runs"
    return ""


def int8_activation(function, x, quantize, name):
    """`function(x)` with 8-bit rounding where TFLite's int8 file rounds inside it.

    Products of two tensors go through `Multiply` layers.

    Args:
        function: a `keras.activations` function.
        x: a symbolic Keras tensor (already on its input grid).
        quantize: `quantize(tensor, name, fixed=None)` puts `tensor` on an
            8-bit grid: calibrated, or `fixed=(signed, step)`.
        name: `name(base)` returns a layer name not used yet.

    Returns:
        The output tensor (its own output grid, if any, is the caller's).
    """
    if function is A.hard_sigmoid:
        # ADD (RELU6 fused), MUL: two int8 ops, exact; constants enter as
        # keras.ops nodes because their int8 form (3 and 1/6, each the top
        # of its own grid) is exact.
        base = name("hard_sigmoid")
        shifted = _named(ops.add(x, 3.0), f"{base}_plus3")
        shifted = keras.layers.Activation("relu6", name=f"{base}_relu6")(shifted)
        shifted = quantize(shifted, f"{base}_relu6")
        return _named(ops.multiply(shifted, 1.0 / 6.0), f"{base}_div6")
    if function is A.hard_silu:
        gate = int8_activation(A.hard_sigmoid, x, quantize, name)
        gate = quantize(gate, name("hard_swish_gate"))
        return keras.layers.Multiply(name=name("hard_swish"))([x, gate])
    if function is A.silu:
        sigmoid = name("swish_sigmoid")
        gate = keras.layers.Activation("sigmoid", name=sigmoid)(x)
        gate = quantize(gate, sigmoid, fixed=FIXED_GRIDS[A.sigmoid])
        return keras.layers.Multiply(name=name("swish"))([x, gate])
    layer = keras.layers.Activation(function, name=name("activation"))
    y = layer(x)
    if function in FIXED_GRIDS:
        y = quantize(y, layer.name, fixed=FIXED_GRIDS[function])
    return y


def _named(tensor, name):
    # keras.ops nodes take the next free default name ("add_3"), which a
    # loaded model may already use.
    private_api.producing_layer(tensor).name = name
    return tensor


# Layers whose output an integer runtime keeps on their input's grid.
SAME_GRID = (
    keras.layers.Reshape,
    keras.layers.Flatten,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.MaxPooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.ZeroPadding2D,
    keras.layers.Identity,
)


# Layers whose output an integer runtime rounds back onto their input's grid:
# TFLite's int8 AVERAGE_POOL_2D keeps its input's scale (`SharedGrid`).
ROUNDED_ON_INPUT_GRID = (keras.layers.AveragePooling2D,)


def is_relu(layer):
    """A layer an integer runtime fuses into the op before it as a clamp."""
    if isinstance(layer, keras.layers.ReLU):
        return not layer.negative_slope and not layer.threshold
    if isinstance(layer, keras.layers.Activation):
        return layer.activation in (keras.activations.relu, keras.activations.relu6)
    return False


def is_softmax(layer):
    """A softmax layer, or a layer whose activation is softmax."""
    if isinstance(layer, keras.layers.Softmax):
        return True
    return getattr(layer, "activation", None) is keras.activations.softmax
