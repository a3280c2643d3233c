"""Every private API of Keras and TensorFlow Lite the library uses, in one place.

Each function says why no public API serves. When an upgrade breaks one of
them, this is the file to mend.
"""


def is_functional(model):
    """True for a Functional model (Sequential counts only through `keras.Sequential`).

    Why: `keras.Model(inputs, outputs)` returns an instance of the private
    `Functional` class; a subclassed model lacks its node table.
    """
    return hasattr(model, "_nodes_by_depth")


def functional_nodes(model):
    """The nodes of a Functional model in topological order (inputs first).

    Why: the public `model.layers` loses the wiring (which tensor feeds which
    call, layers called twice); the node table by depth keeps it.
    """
    by_depth = model._nodes_by_depth
    return [
        node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]
    ]


def node_call_arguments(node, tensors):
    """`(args, kwargs)` of a node's layer call with its input tensors replaced.

    Args:
        node: a node from `functional_nodes`.
        tensors: `{id(KerasTensor): replacement}` for the node's inputs.

    Why: only the node records the call's full argument structure (a list
    passed to `Add`, keyword arguments such as `training` or `mask`).
    """
    return node.arguments.fill_in(tensors)


def producing_layer(tensor):
    """The layer that produced a symbolic `KerasTensor` (None for an input).

    Why: the rewrite names each activation quantizer after the layer it
    follows; Keras keeps that link only in `_keras_history`.
    """
    return tensor._keras_history.operation


def call_inputs(tensor):
    """The symbolic inputs of the call that produced `tensor` (none for an input).

    Why: walking a Functional graph back from one tensor needs the call
    (node) that made it; Keras keeps that link only in `_keras_history`.
    """
    operation, node_index, _ = tensor._keras_history
    return list(operation._inbound_nodes[node_index].input_tensors)


def tflite_ops(interpreter):
    """The ops of a loaded TFLite model: dicts with `op_name`, `inputs`, `outputs`.

    Why: the public `Interpreter` lists tensors, not the ops between them,
    and the step of a float output sits on its DEQUANTIZE op's input.
    """
    return interpreter._get_ops_details()


def tflite_tensor(interpreter, index):
    """Details (dtype, `quantization`, ...) of tensor `index`, also intermediate.

    Why: the public API reads input and output details, or every tensor at
    once; this reads one intermediate tensor by its index (subgraph 0).
    """
    return interpreter._get_tensor_details(int(index), 0)


def pack_low_bit_weights(converter):
    """Let the TFLite converter store 4-bit fake-quantized weights as int4.

    Why: the converter has no public switch for packed int4 weights.
    """
    converter._experimental_low_bit_qat = True


def skip_single_replica_all_reduce(optimizer):
    """Stop a TensorFlow-backend optimizer all-reducing its gradients.

    Why: Keras' TensorFlow optimizer sums gradients over replicas through
    `tf.distribute`'s replica context even when there is one replica. In a
    traced step that call registers a custom gradient in TensorFlow's global
    registry, which keeps the step's graph (and ~2 MB per optimizer) alive
    for the life of the process; reconstruction traces three optimizers per
    block. With one replica the sum is the identity, and there is no public
    switch to leave it out. Only call it outside a `tf.distribute` strategy.
    """
    optimizer._all_reduce_sum_gradients = lambda grads_and_vars: grads_and_vars


def operation_name(operation):
    """The class name of a `keras.ops` operation node (`"Add"`, `"Sigmoid"`), or None.

    Why: a Functional graph built with `x + 3.0` or `keras.ops.sigmoid(x)`
    holds operations that are not layers; their classes live in the private
    `keras.src.ops` modules and are public only as functions.
    """
    import keras

    if isinstance(operation, keras.layers.Layer):
        return None
    if not type(operation).__module__.startswith("keras.src.ops"):
        return None
    return type(operation).__name__
