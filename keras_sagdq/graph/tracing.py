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


def is_graph_model(model):
    """True for Sequential and Functional models (not subclassed ones)."""
    return isinstance(model, keras.Sequential) or (
        isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")
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
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            args, kwargs = node.arguments.fill_in(refs)
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
