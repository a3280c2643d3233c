"""Flatten a Sequential or Functional model into an ordered list of layer calls.

Nested models (a Sequential or Functional used as a layer) are inlined, so
the rewrite sees one flat graph of plain layers. Tensors are named by
integer ids; a `Step` records one layer call with those ids in place of its
tensors.
"""

import dataclasses
import itertools

import keras
from keras import tree

from keras_sagdq import private_api


@dataclasses.dataclass(frozen=True)
class TensorRef:
    """Placeholder for a tensor inside a `Step`'s arguments."""

    id: int


@dataclasses.dataclass
class Step:
    """One layer call: `outputs = layer(*args, **kwargs)`."""

    layer: keras.layers.Layer
    args: tuple
    kwargs: dict
    outputs: list

    @property
    def input_ids(self):
        return [
            x.id
            for x in tree.flatten((self.args, self.kwargs))
            if isinstance(x, TensorRef)
        ]


@dataclasses.dataclass
class Graph:
    """A flat model: input ids, ordered steps, output ids (and their structure)."""

    inputs: list
    input_specs: list
    steps: list
    outputs: list

    def producers(self):
        return {i: step for step in self.steps for i in step.outputs}

    def consumers(self):
        result = {}
        for step in self.steps:
            for i in step.input_ids:
                result.setdefault(i, []).append(step)
        return result

    def leading_steps(self):
        """The steps from the first input on, while each tensor has one reader.

        The chain of preprocessing layers (and input quantizers) a model
        starts with: it stops at the first tensor read twice or never.
        """
        consumers, current = self.consumers(), self.inputs[0]
        while len(consumers.get(current, [])) == 1:
            (step,) = consumers[current]
            yield step
            if len(step.outputs) != 1:
                return
            (current,) = step.outputs


def is_graph_model(model):
    """True for Sequential and Functional models (not subclassed ones)."""
    return isinstance(model, keras.Sequential) or (
        isinstance(model, keras.Model) and private_api.is_functional(model)
    )


def trace(model):
    """Flatten `model` into a `Graph`.

    Args:
        model: a built Sequential or Functional `keras.Model`.

    Returns:
        A `Graph` whose steps reference the model's own layers.
    """
    counter = itertools.count()
    input_specs = [
        keras.KerasTensor(x.shape, dtype=x.dtype, name=x.name) for x in model.inputs
    ]
    inputs = [next(counter) for _ in input_specs]
    steps = []
    outputs = _trace_into(model, inputs, steps, counter)
    return Graph(inputs, input_specs, steps, outputs)


def _trace_into(model, input_ids, steps, counter):
    if isinstance(model, keras.Sequential):
        (current,) = input_ids
        for layer in model.layers:
            (current,) = _trace_call(
                layer, (TensorRef(current),), {}, 1, steps, counter
            )
        return [current]
    refs = {id(x): TensorRef(i) for x, i in zip(model.inputs, input_ids)}
    for node in private_api.functional_nodes(model):
        if node.is_input:
            continue
        args, kwargs = private_api.node_call_arguments(node, refs)
        out_ids = _trace_call(
            node.operation, args, kwargs, len(node.outputs), steps, counter
        )
        for x, i in zip(node.outputs, out_ids):
            refs[id(x)] = TensorRef(i)
    return [refs[id(x)].id for x in model.outputs]


def _trace_call(layer, args, kwargs, num_outputs, steps, counter):
    if is_graph_model(layer):
        ids = [x.id for x in tree.flatten(args) if isinstance(x, TensorRef)]
        return _trace_into(layer, ids, steps, counter)
    if isinstance(layer, keras.Model):
        raise TypeError(
            f"Nested model {layer.name!r} is a subclassed model; only Sequential "
            "and Functional models can be traced. "
            f"Received: {type(layer).__name__}"
        )
    outputs = [next(counter) for _ in range(num_outputs)]
    steps.append(Step(layer, tuple(args), dict(kwargs), outputs))
    return outputs


def fill_arguments(step, tensors):
    """`(args, kwargs)` of `step` with each `TensorRef` replaced from `tensors`."""
    return tree.map_structure(
        lambda x: tensors[x.id] if isinstance(x, TensorRef) else x,
        (step.args, step.kwargs),
    )


def call_layer(step, args, kwargs):
    """The default `call` of `replay`: the step's own layer."""
    return step.layer(*args, **kwargs)


def replay(steps, tensors, call=call_layer, store=None):
    """Run traced steps on values: the one graph interpreter of the library.

    The block finder, the BatchNorm probe, the rewrite and the export all
    walk a traced graph; they differ only in what they call for a step and
    what they keep of each produced tensor, which the two hooks say.

    Args:
        steps: `Step`s in topological order (a `Graph`'s steps or a slice).
        tensors: `{tensor id: value}` the steps start from (the inputs).
        call: `call(step, args, kwargs)` returns the step's outputs (a
            value or a list/tuple of them); default: call the step's layer.
        store: optional `store(tensor id, value)` returning the value to
            keep for later steps (e.g. quantized); also applied to `tensors`.

    Returns:
        A dict `{tensor id: value}` of the starting and produced tensors.

    Example:

    >>> graph = trace(model)
    >>> values = replay(graph.steps, {graph.inputs[0]: images})
    >>> logits = values[graph.outputs[0]]
    """
    if store is None:
        values = dict(tensors)
    else:
        values = {i: store(i, x) for i, x in tensors.items()}
    for step in steps:
        args, kwargs = fill_arguments(step, values)
        outputs = tree.flatten(call(step, args, kwargs))
        for i, y in zip(step.outputs, outputs):
            values[i] = y if store is None else store(i, y)
    return values


def tap(graph, inputs, tensor_ids, call=call_layer):
    """The values of chosen intermediate tensors of a traced graph.

    Args:
        graph: a `Graph` from `trace`.
        inputs: the model's input value, or a list for several inputs.
        tensor_ids: ids of the tensors to return (e.g. the input of the
            last Dense: `graph.steps[-1].input_ids[0]`).
        call: as in `replay`.

    Returns:
        `(outputs, taps)`: the model outputs (one value or a list) and the
        list of tapped values, in the order of `tensor_ids`.

    Example:

    >>> graph = trace(model)
    >>> head = [s for s in graph.steps if isinstance(s.layer, keras.layers.Dense)][-1]
    >>> logits, (features,) = tap(graph, images, [head.input_ids[0]])
    """
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    values = replay(graph.steps, dict(zip(graph.inputs, inputs)), call=call)
    outputs = [values[i] for i in graph.outputs]
    return (outputs[0] if len(outputs) == 1 else outputs), [
        values[i] for i in tensor_ids
    ]
