"""Split a model into blocks for reconstruction, by single-tensor cuts.

A cut is a point in the (topologically ordered) graph where exactly one
tensor computed so far is still needed later. Residual blocks contain no
cut (the shortcut keeps a second tensor alive), so they come out whole; a
plain chain of layers gets a cut after every layer. Runs of layers without
weights (pooling, a lone activation quantizer) join the block before them.
"""

import dataclasses

from keras_sagdq import layers
from keras_sagdq.graph import tracing
from keras_sagdq.layers import ActivationQuantizer
from keras_sagdq.layers import WeightQuantization


@dataclasses.dataclass
class Block:
    """A run of steps with one input tensor and one output tensor.

    Attributes:
        steps: the `tracing.Step`s, in order.
        input_id: id of the tensor the block reads.
        output_id: id of the tensor the block produces.
    """

    steps: list
    input_id: int
    output_id: int

    @property
    def layers(self):
        seen, result = set(), []
        for step in self.steps:
            if id(step.layer) not in seen:
                seen.add(id(step.layer))
                result.append(step.layer)
        return result

    @property
    def weight_layers(self):
        return layers.weight_layers(self)

    @property
    def activation_quantizers(self):
        return layers.activation_quantizers(self)

    @property
    def name(self):
        names = [layer.name for layer in self.weight_layers] or [self.layers[0].name]
        return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"

    def __call__(self, x, training=False):
        """Run the block's layers on `x`; `training` turns QDrop on."""
        return run_steps(self.steps, {self.input_id: x}, self.output_id, training)


def run_steps(steps, tensors, output_id, training=False):
    """Replay `steps` from the given `{tensor id: value}` and return `output_id`."""

    def call(step, args, kwargs):
        # Only the quantizers train (QDrop); Dropout or a float BatchNorm
        # must keep their inference behaviour during calibration.
        if training and isinstance(step.layer, ActivationQuantizer):
            kwargs = dict(kwargs, training=True)
        return step.layer(*args, **kwargs)

    return tracing.replay(steps, tensors, call=call)[output_id]


def _has_weights(steps):
    return any(isinstance(s.layer, WeightQuantization) for s in steps)


def find_blocks(model):
    """Blocks of a single-input, single-output Functional or Sequential model.

    Args:
        model: a quantized model (or any graph model).

    Returns:
        `(graph, blocks)`: the traced `tracing.Graph` and the list of `Block`s
        covering all of its steps in order.

    Raises:
        ValueError: if the model has several inputs or outputs, or no layer
            with quantized weights.

    Example:

    >>> graph, blocks = find_blocks(qmodel)
    >>> [b.name for b in blocks]
    ['stem_conv', ..., 'head']
    """
    graph = tracing.trace(model)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ValueError(
            "Block reconstruction needs a model with one input and one output. "
            f"Received: {len(graph.inputs)} inputs, {len(graph.outputs)} outputs"
        )
    last_use = {}
    for index, step in enumerate(graph.steps):
        for i in step.input_ids:
            last_use[i] = index
    end = len(graph.steps)
    for i in graph.outputs:
        last_use[i] = end

    # Cut after step k when one tensor alone is alive; `live` holds tensors
    # produced so far that some later step (or the output) still reads.
    ranges, start = [], 0
    live = {graph.inputs[0]} if last_use.get(graph.inputs[0], -1) >= 0 else set()
    for index, step in enumerate(graph.steps):
        live.update(i for i in step.outputs if last_use.get(i, -1) > index)
        live = {i for i in live if last_use.get(i, -1) > index}
        if len(live) == 1:
            (cut,) = live
            ranges.append((start, index + 1, cut))
            start = index + 1
    if start != end:
        raise ValueError("The model's graph does not end in a single output tensor.")

    blocks, input_id = [], graph.inputs[0]
    for lo, hi, cut in ranges:
        steps = graph.steps[lo:hi]
        if blocks and not (_has_weights(steps) and _has_weights(blocks[-1].steps)):
            blocks[-1].steps.extend(steps)
            blocks[-1].output_id = cut
        else:
            blocks.append(Block(list(steps), input_id, cut))
        input_id = cut
    if not _has_weights(graph.steps):
        raise ValueError(
            f"Model {model.name!r} has no quantized layer; call quantize_model first."
        )
    return graph, blocks
