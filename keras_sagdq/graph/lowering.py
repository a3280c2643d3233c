"""Layers the rewrite quantizes as the plain layers an int8 file computes them with.

- `Conv2D(groups=channels)` is a depthwise convolution.
- `SeparableConv2D` is a depthwise convolution followed by a 1x1 convolution:
  TFLite runs it as DEPTHWISE_CONV_2D then CONV_2D with an int8 tensor
  between them. Split into the two Keras layers, each is quantized like any
  other, and a BatchNorm after it folds into the 1x1 convolution.
- A BatchNorm that cannot be folded (pre-activation `BN -> ReLU -> Conv`, or
  after a layer with a nonlinear activation) is a per-channel affine
  `x * scale + offset`: a 1x1 depthwise convolution with one weight per
  channel, exact on an 8-bit grid, with its ReLU fused as in the file.

`lower` returns a new traced graph whose steps use the new layers, so the
rest of the rewrite never sees the composite ones.
"""

import dataclasses
import itertools

import keras
import numpy as np
from keras import ops

from keras_sagdq.graph import bn_folding
from keras_sagdq.graph import tracing

# Report notes, by the id of the layer a lowering made.
SEPARABLE_NOTE = "half of SeparableConv2D {name!r}"
AFFINE_NOTE = "BatchNormalization {name!r} as a per-channel affine (8-bit)"
RESCALING_NOTE = "BatchNormalization {name!r} as a Rescaling (one op in the file)"
GROUPED_NOTE = "Conv2D {name!r} with one group per channel, as DepthwiseConv2D"


def lower(graph, unfoldable, skip_layers=()):
    """Replace SeparableConv2D steps and the given BatchNorm steps by plain layers.

    Args:
        graph: a `tracing.Graph`.
        unfoldable: ids of BatchNormalization steps to write as affines.
        skip_layers: names of layers to leave as they are.

    Returns:
        `(graph, notes)`: the new graph (the input is not modified) and
        `{id(new layer): report note}`.
    """
    counter = itertools.count(_max_id(graph) + 1)
    steps, notes = [], {}
    calls = {}
    for step in graph.steps:
        calls[id(step.layer)] = calls.get(id(step.layer), 0) + 1
    for step in graph.steps:
        layer = step.layer
        plain = calls[id(layer)] == 1 and layer.name not in skip_layers
        if plain and _is_grouped_depthwise(layer):
            new = _grouped_as_depthwise(step)
            notes[id(new.layer)] = GROUPED_NOTE.format(name=layer.name)
            steps.append(new)
        elif plain and _is_separable(layer):
            new = _split_separable(step, counter)
            notes.update(
                (id(s.layer), SEPARABLE_NOTE.format(name=layer.name)) for s in new
            )
            steps.extend(new)
        elif plain and id(step) in unfoldable and _is_channel_bn(layer):
            new = _affine_step(step)
            notes[id(new.layer)] = AFFINE_NOTE.format(name=layer.name)
            steps.append(new)
        elif plain and id(step) in unfoldable and _is_feature_bn(layer):
            new = _rescaling_step(step)
            notes[id(new.layer)] = RESCALING_NOTE.format(name=layer.name)
            steps.append(new)
        else:
            steps.append(step)
    return dataclasses.replace(graph, steps=steps), notes


def _max_id(graph):
    ids = list(graph.inputs) + list(graph.outputs)
    for step in graph.steps:
        ids += step.input_ids + list(step.outputs)
    return max(ids)


def _is_grouped_depthwise(layer):
    # ConvNeXt writes its depthwise convolutions as Conv2D(groups=channels).
    if type(layer) is not keras.layers.Conv2D or layer.groups == 1:
        return False
    channels = int(layer.input.shape[-1])
    return (
        layer.data_format == "channels_last"
        and layer.groups == channels
        and layer.filters % channels == 0
    )


def _grouped_as_depthwise(step):
    layer = step.layer
    channels = int(layer.input.shape[-1])
    multiplier = layer.filters // channels
    depthwise = keras.layers.DepthwiseConv2D(
        layer.kernel_size,
        strides=layer.strides,
        padding=layer.padding,
        depth_multiplier=multiplier,
        dilation_rate=layer.dilation_rate,
        use_bias=layer.use_bias,
        activation=layer.activation,
        name=f"{layer.name}_depthwise",
    )
    depthwise.build(layer.input.shape)
    # Group c's outputs are channels c * m .. c * m + m - 1, as the
    # depthwise layer orders (input channel, multiplier) pairs.
    kernel = ops.convert_to_numpy(layer.kernel)
    weights = [kernel.reshape(*kernel.shape[:2], channels, multiplier)]
    if layer.use_bias:
        weights.append(ops.convert_to_numpy(layer.bias))
    depthwise.set_weights(weights)
    return tracing.Step(depthwise, step.args, step.kwargs, list(step.outputs))


def _is_separable(layer):
    return (
        type(layer) is keras.layers.SeparableConv2D
        and layer.data_format == "channels_last"
        and len(layer.input.shape) == 4
    )


def _is_channel_bn(layer):
    return _last_axis_bn_rank(layer) == 4


def _last_axis_bn_rank(layer):
    """The input rank of a BatchNorm over the last axis, else None."""
    if type(layer) is not keras.layers.BatchNormalization:
        return None
    axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
    rank = len(layer.input.shape)
    return rank if axis in (-1, rank - 1) else None


def _split_separable(step, counter):
    layer = step.layer
    channels = int(layer.input.shape[-1])
    depthwise = keras.layers.DepthwiseConv2D(
        layer.kernel_size,
        strides=layer.strides,
        padding=layer.padding,
        depth_multiplier=layer.depth_multiplier,
        dilation_rate=layer.dilation_rate,
        use_bias=False,
        name=f"{layer.name}_depthwise",
    )
    depthwise.build(layer.input.shape)
    depthwise.set_weights([ops.convert_to_numpy(layer.depthwise_kernel)])
    pointwise = keras.layers.Conv2D(
        layer.filters,
        1,
        use_bias=layer.use_bias,
        activation=layer.activation,
        name=f"{layer.name}_pointwise",
    )
    pointwise.build((None, None, None, channels * layer.depth_multiplier))
    weights = [ops.convert_to_numpy(layer.pointwise_kernel)]
    if layer.use_bias:
        weights.append(ops.convert_to_numpy(layer.bias))
    pointwise.set_weights(weights)
    middle = next(counter)
    return [
        tracing.Step(depthwise, step.args, step.kwargs, [middle]),
        tracing.Step(pointwise, (tracing.TensorRef(middle),), {}, list(step.outputs)),
    ]


def _is_feature_bn(layer):
    # A BatchNorm on features (Dense -> ReLU -> BatchNorm in a classifier head).
    return _last_axis_bn_rank(layer) == 2


def _rescaling_step(step):
    layer = step.layer
    scale, offset = bn_folding.batchnorm_affine(layer)
    rescaling = keras.layers.Rescaling(
        [float(v) for v in scale], [float(v) for v in offset], name=layer.name
    )
    return tracing.Step(rescaling, step.args[:1], {}, list(step.outputs))


def _affine_step(step):
    layer = step.layer
    scale, offset = bn_folding.batchnorm_affine(layer)
    channels = scale.shape[0]
    affine = keras.layers.DepthwiseConv2D(1, use_bias=True, name=f"{layer.name}_affine")
    affine.build(layer.input.shape)
    affine.set_weights(
        [
            scale.reshape(1, 1, channels, 1).astype(np.float32),
            offset.astype(np.float32),
        ]
    )
    # BatchNormalization's call takes `training`; the affine does not.
    return tracing.Step(affine, step.args[:1], {}, list(step.outputs))


def normalization_affine(layer):
    """`(scale, offset)` float64 `(C,)` arrays of a last-axis Normalization, or None.

    The layer computes `x * scale + offset`, exactly as Keras divides by
    `max(sqrt(variance), epsilon)`. The rewrite writes it as a Rescaling:
    the converter would write a Normalization as SUB and MUL, two roundings
    where the Keras model has none, while a Rescaling exports as one 1x1
    depthwise convolution whose offset the rewrite puts on the file's grid.
    """
    if type(layer) is not keras.layers.Normalization or layer.invert:
        return None
    if tuple(layer.axis) not in ((-1,), (len(layer.input.shape) - 1,)):
        return None
    mean = np.reshape(ops.convert_to_numpy(layer.mean), (-1,)).astype(np.float64)
    variance = np.reshape(ops.convert_to_numpy(layer.variance), (-1,))
    std = np.maximum(np.sqrt(variance.astype(np.float64)), keras.backend.epsilon())
    scale = 1.0 / std
    return scale, -mean * scale
