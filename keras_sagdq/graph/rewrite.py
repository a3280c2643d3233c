"""Rewrite a float Keras model into its quantized twin.

Steps: flatten the model (`tracing`), decide per layer (quantize, fold a
BatchNorm, keep float, pass through), then replay the graph with
weight-quantized layers and one `ActivationQuantizer` on each tensor that
feeds a quantized layer. All consumers of that tensor read the quantized
value, so a residual block's input is quantized once and shared by its
branch and its shortcut.
"""

import dataclasses

import keras
from keras import ops

from keras_sagdq import private_api
from keras_sagdq.calibration import calibrate_activations
from keras_sagdq.config import QuantConfig
from keras_sagdq.graph import activations
from keras_sagdq.graph import bn_folding
from keras_sagdq.graph import lowering
from keras_sagdq.graph import tracing
from keras_sagdq.graph.activations import ROUNDED_ON_INPUT_GRID
from keras_sagdq.graph.activations import SAME_GRID
from keras_sagdq.graph.activations import is_relu
from keras_sagdq.graph.activations import is_softmax
from keras_sagdq.graph.report import LayerReport
from keras_sagdq.graph.report import QuantizationReport
from keras_sagdq.graph.report import sqnr_db
from keras_sagdq.layers import ActivationQuantizer
from keras_sagdq.layers import SharedGrid
from keras_sagdq.layers import quantized_class_for


def quantize_model(model, config=None, calibration_data=None):
    """Return the quantized twin of a Sequential or Functional model.

    BatchNorms are folded into the Conv2D / DepthwiseConv2D / Dense before
    them; these layers become `QuantConv2D` / `QuantDepthwiseConv2D` /
    `QuantDense` with steps set by the `mean|w - Q(w)|^2.4` search and
    round-to-nearest weights (`mode="hard"`). Each tensor that feeds a
    quantized layer gets one `ActivationQuantizer`; these stay pass-through
    until calibrated, by `calibration_data` here or later by
    `keras_sagdq.calibrate_activations` or `keras_sagdq.reconstruct`.
    Other layers are cloned with their weights; layers that have weights but
    cannot be quantized stay float and are listed in the report with the
    reason. The original model is not modified.

    Args:
        model: a built Sequential or Functional `keras.Model`. Nested
            Sequential/Functional models are inlined.
        config: a `QuantConfig`; default `QuantConfig()` (W4A4, first and
            last layers W8).
        calibration_data: optional numpy images to set the activation steps
            from (see `calibrate_activations`).

    Returns:
        A new Functional `keras.Model` with the same inputs and outputs,
        with a `quantization_report` attribute (`QuantizationReport`).

    Raises:
        TypeError: if `model` is not a Keras model, or is a subclassed model.
        ValueError: if the model is not built or has no quantizable layer.

    Example:

    >>> config = ks.QuantConfig(weight_bits=4, activation_bits=4)
    >>> qmodel = ks.quantize_model(model, config)
    >>> print(qmodel.quantization_report)
    layer ...
    >>> ks.set_mode(qmodel, "float")   # now predicts like `model`
    """
    config = QuantConfig() if config is None else config
    if not isinstance(config, QuantConfig):
        raise TypeError(
            f"`config` must be a keras_sagdq.QuantConfig. Received: config={config!r}"
        )
    _check_model(model)
    # Separable convolutions split first, so BatchNorms after them fold; the
    # BatchNorms that still cannot fold then become affines.
    graph, notes = lowering.lower(tracing.trace(model), set(), config.skip_layers)
    if config.fold_batchnorm:
        first = _Plan(graph, config, notes)
        producers = graph.producers()
        # Not after a layer kept float (skipped, shared, unsupported): the
        # user keeps that part float.
        unfoldable = {
            id(step)
            for step in graph.steps
            if isinstance(step.layer, keras.layers.BatchNormalization)
            and id(step) in first.float_reason
            and id(producers.get(step.input_ids[0])) not in first.float_reason
        }
        graph, more = lowering.lower(graph, unfoldable, config.skip_layers)
        notes.update(more)
    plan = _Plan(graph, config, notes)
    if not plan.quantized:
        raise ValueError(
            "The model has no layer that can be quantized (Conv2D, "
            "DepthwiseConv2D or Dense, not listed in `skip_layers`). "
            f"Received: model {model.name!r} with layers "
            f"{[type(s.layer).__name__ for s in graph.steps]}"
        )
    qmodel, rows = _Builder(graph, plan, config).build(model.name + "_quantized")
    qmodel.quantization_report = QuantizationReport(rows)
    if calibration_data is not None:
        calibrate_activations(qmodel, calibration_data)
    return qmodel


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a keras.Model. Received: model of type "
            f"{type(model).__name__}"
        )
    if not tracing.is_graph_model(model):
        raise TypeError(
            "`model` must be a Sequential or Functional model; subclassed models "
            "have no graph to rewrite. Rebuild it with the Functional API. "
            f"Received: model of type {type(model).__name__}"
        )
    if not model.built or not model.inputs:
        raise ValueError(
            "`model` is not built: call it on data or build it with an input "
            f"shape first. Received: model {model.name!r} with built={model.built}"
        )


class _Plan:
    """Per-step decisions: which layers to quantize, fold, keep float."""

    def __init__(self, graph, config, notes=None):
        self.graph = graph
        self.notes = notes or {}
        producers = graph.producers()
        consumers = graph.consumers()
        layer_calls = {}
        for step in graph.steps:
            layer_calls[id(step.layer)] = layer_calls.get(id(step.layer), 0) + 1

        self.quantized = {}  # id(step) -> step
        self.float_reason = {}  # id(step) -> reason
        for step in graph.steps:
            layer = step.layer
            weights = getattr(layer, "weights", None)
            if weights and layer_calls[id(layer)] > 1:
                self.float_reason[id(step)] = "shared layer (called more than once)"
            elif getattr(layer, "groups", 1) != 1:
                self.float_reason[id(step)] = (
                    f"grouped convolution (groups={layer.groups}) other than one "
                    "group per channel"
                )
            elif quantized_class_for(layer) is not None:
                if layer.name in config.skip_layers:
                    self.float_reason[id(step)] = "listed in skip_layers"
                else:
                    self.quantized[id(step)] = step
            elif weights and not isinstance(layer, keras.layers.BatchNormalization):
                self.float_reason[id(step)] = (
                    f"{type(layer).__name__} is not a supported layer type"
                )

        # BatchNorm folding: BN reads the only use of a quantized layer's output.
        self.folded_into = {}  # id(bn step) -> layer step
        self.folded_bn = {}  # id(layer step) -> bn step
        for step in graph.steps:
            if not isinstance(step.layer, keras.layers.BatchNormalization):
                continue
            if id(step) in self.float_reason:  # shared
                continue
            reason = self._fold_blocker(step, producers, consumers, config)
            if reason:
                self.float_reason[id(step)] = reason
            else:
                producer = producers[step.input_ids[0]]
                self.folded_into[id(step)] = producer
                self.folded_bn[id(producer)] = step

        # BatchNorms written as affines: 8-bit weights and inputs, and no
        # say in which layers are first or last.
        self.affine = {
            key
            for key, step in self.quantized.items()
            if self.notes.get(id(step.layer), "").startswith("BatchNormalization")
        }
        self.position = self._positions(consumers)
        # Bits of each quantized tensor: the most any quantized consumer needs.
        self.tensor_bits = {}
        self.inherited = {}  # tensor -> bits of the grid it is on already
        self.rounded_on_input_grid = set()  # average pooling outputs (SharedGrid)
        for key, step in self.quantized.items():
            if key in self.affine:
                bits = 8
            else:
                bits = config.input_bits_for(self.position[key])
            if bits is not None:
                i = step.input_ids[0]
                self.tensor_bits[i] = max(bits, self.tensor_bits.get(i, 0))
        self._move_grids_before_same_grid_ops(consumers)
        if config.int8_tensors:
            for i in self._int8_tensors(producers, consumers):
                self.tensor_bits[i] = 8
        self._inherit_grids(producers)

    def _move_grids_before_same_grid_ops(self, consumers):
        """Quantize before a pad, pooling or reshape that is its input's only reader.

        TFLite's int8 MAX_POOL_2D, PAD and RESHAPE keep their input's scale
        (XNNPACK takes nothing else); a grid of their own on the output is a
        requantization the delegate leaves to TFLite's kernels. An
        AVERAGE_POOL_2D must keep it (the converter refuses two scales).
        """
        for step in reversed(self.graph.steps):
            keeps_grid = isinstance(step.layer, (*SAME_GRID, *ROUNDED_ON_INPUT_GRID))
            if not keeps_grid or len(step.outputs) != 1:
                continue
            (source,), (target,) = step.input_ids[:1], step.outputs
            if (
                target in self.tensor_bits
                and len(consumers.get(source, [])) == 1
                and source not in self.graph.outputs
                and source not in self.graph.inputs
            ):
                bits = self.tensor_bits.pop(target)
                self.tensor_bits[source] = max(bits, self.tensor_bits.get(source, 0))

    def _inherit_grids(self, producers):
        """Drop grids that a value-preserving op's output would repeat.

        A ReLU, pad, pooling or reshape of a tensor on a b-bit grid is on
        that grid already (a ReLU that the op before cannot fuse, because its
        input has other readers, clamps at the grid's zero). A second
        quantizer of b bits would only requantize (XNNPACK leaves a RELU or
        MAX_POOL_2D with two scales to TFLite's kernels).
        """
        for step in self.graph.steps:
            layer = step.layer
            if len(step.outputs) != 1 or not step.input_ids:
                continue
            pools = isinstance(layer, ROUNDED_ON_INPUT_GRID)
            if not (isinstance(layer, SAME_GRID) or is_relu(layer) or pools):
                continue
            (source,), (target,) = step.input_ids[:1], step.outputs
            bits = self.tensor_bits.get(source, self.inherited.get(source))
            if bits is not None and pools:
                # Averages rounded back onto the input's grid; a grid of
                # other bits after that is a requantization of its own.
                self.rounded_on_input_grid.add(target)
                self.notes.setdefault(
                    id(layer),
                    "averages rounded onto its input's grid, as TFLite's int8 "
                    "average pooling does",
                )
                if target not in self.tensor_bits:
                    self.inherited[target] = bits
            if bits is not None and self.tensor_bits.get(target) == bits:
                del self.tensor_bits[target]
                self.inherited[target] = bits

    def _int8_tensors(self, producers, consumers):
        """Tensors an integer runtime holds that no quantizer covers yet.

        Every tensor between ops is int8 in a `.tflite` file, the input
        included (calibration gives its quantizer the grid of the input's
        usual range, see `keras_sagdq.input_range`). Not held on a grid of
        their own: outputs
        read only by a folded BatchNorm or by ReLUs (fused into the op
        before), outputs of layers that keep their input's grid (reshapes,
        max pooling), and outputs of softmax, sigmoid and tanh (TFLite fixes
        their grid; the rewrite puts sigmoid and tanh on it), outputs of
        average pooling (rounded onto their input's grid), and inputs read
        only by concatenations (held on the concatenation's grid).
        """
        # The model input too: its grid becomes the file's input grid.
        result = [i for i in self.graph.inputs if i not in self.tensor_bits]
        for step in self.graph.steps:
            if (
                isinstance(step.layer, (*SAME_GRID, *ROUNDED_ON_INPUT_GRID))
                or is_softmax(step.layer)
                or self._output_activation(step) in activations.FIXED_GRIDS
            ):
                continue
            for i in step.outputs:
                readers = consumers.get(i, [])
                if i in self.tensor_bits:
                    continue
                if readers and all(
                    id(r) in self.folded_into
                    or is_relu(r.layer)
                    # A Dropout or Reshape whose output is quantized anyway.
                    or (
                        isinstance(r.layer, SAME_GRID)
                        and all(o in self.tensor_bits for o in r.outputs)
                    )
                    for r in readers
                ):
                    continue
                result.append(i)
        # TFLite's int8 CONCATENATION keeps one scale for its inputs and
        # output: the converter writes an input read only there straight on
        # the output's grid, so a grid of its own would round twice.
        covered = set(result) | set(self.tensor_bits)
        return [
            i
            for i in result
            if i in self.graph.inputs
            or not consumers.get(i)
            or not all(
                isinstance(r.layer, keras.layers.Concatenate)
                and all(o in covered for o in r.outputs)
                for r in consumers[i]
            )
        ]

    def _output_activation(self, step):
        """The activation applied last by `step`: its own, or a quantized layer's."""
        if id(step) in self.quantized:
            return step.layer.activation
        return activations.activation_function(step.layer)

    def _fold_blocker(self, bn_step, producers, consumers, config):
        if not config.fold_batchnorm:
            return "fold_batchnorm=False"
        layer = bn_step.layer
        ids = bn_step.input_ids
        producer = producers.get(ids[0]) if len(ids) == 1 else None
        if producer is None or id(producer) not in self.quantized:
            return (
                "no quantized Conv2D/DepthwiseConv2D/Dense right before it to fold into"
            )
        if layer.axis not in (-1, len(layer.input.shape) - 1):
            return f"normalizes axis {layer.axis}, not the channel axis"
        if producer.layer.activation not in (None, keras.activations.linear):
            return f"{producer.layer.name!r} has a nonlinear activation before it"
        if len(consumers.get(ids[0], [])) > 1 or ids[0] in self.graph.outputs:
            return f"the output of {producer.layer.name!r} has other consumers"
        return ""

    def _positions(self, consumers):
        """'first' / 'last' / 'inner' for each quantized step."""
        # Forward: does a quantized layer lie upstream of the tensor?
        counted = {k: v for k, v in self.quantized.items() if k not in self.affine}
        after_quantized = {i: False for i in self.graph.inputs}
        for step in self.graph.steps:
            flag = id(step) in counted or any(
                after_quantized.get(i, False) for i in step.input_ids
            )
            for i in step.outputs:
                after_quantized[i] = flag
        # Backward: does the tensor reach an output without a quantized layer?
        reaches_output = {i: True for i in self.graph.outputs}
        for step in reversed(self.graph.steps):
            for i in step.outputs:
                reaches_output.setdefault(i, False)
                reaches_output[i] = reaches_output[i] or any(
                    id(c) not in counted
                    and any(reaches_output.get(o, False) for o in c.outputs)
                    for c in consumers.get(i, [])
                )
        positions = {}
        for key, step in self.quantized.items():
            if not any(after_quantized.get(i, False) for i in step.input_ids):
                positions[key] = "first"
            elif any(reaches_output[i] for i in step.outputs):
                positions[key] = "last"
            else:
                positions[key] = "inner"
        return positions


class _Builder:
    """Replays a traced graph with quantized layers."""

    def __init__(self, graph, plan, config):
        self.graph = graph
        self.plan = plan
        self.config = config
        self.clones = {}
        self.names = set()
        self.rows = []
        self.on_fixed_grid = set()
        self.grid_of = {}  # id(keras tensor) -> the ActivationQuantizer of its grid

    def build(self, name):
        inputs = [
            keras.Input(batch_shape=spec.shape, dtype=spec.dtype, name=spec.name)
            for spec in self.graph.input_specs
        ]
        tensors = tracing.replay(
            self.graph.steps,
            dict(zip(self.graph.inputs, inputs)),
            call=self._call,
            store=self._maybe_quantize,
        )
        outputs = [tensors[i] for i in self.graph.outputs]
        model = keras.Model(_single(inputs), _single(outputs), name=name)
        return model, self.rows

    def _unique(self, name):
        candidate, n = name, 1
        while candidate in self.names:
            candidate, n = f"{name}_{n}", n + 1
        self.names.add(candidate)
        return candidate

    def _maybe_quantize(self, tensor_id, tensor):
        bits = self.plan.tensor_bits.get(tensor_id)
        if bits is None or (bits == 8 and id(tensor) in self.on_fixed_grid):
            return tensor
        source = private_api.producing_layer(tensor)
        if tensor_id in self.graph.inputs or source is None:
            base = "input"
        else:
            base = source.name
        return self._quantizer(tensor, base, bits)

    def _quantizer(self, tensor, base, bits=8, fixed=None):
        options = {"symmetry": self.config.activation_symmetry}
        if fixed is not None:
            options = {"signed": fixed[0], "fixed_step": fixed[1]}
        quantizer = ActivationQuantizer(
            bits=bits, mode="hard", name=self._unique(f"{base}_act_quant"), **options
        )
        outputs = quantizer(tensor)
        self.grid_of[id(outputs)] = quantizer
        if fixed is not None:
            # Already an int8 tensor: an 8-bit grid of its own after it would
            # be a second rounding the converter leaves out.
            self.on_fixed_grid.add(id(outputs))
        return outputs

    def _internal_quantizer(self, tensor, base, fixed=None):
        """An 8-bit grid inside an activation, where the int8 file rounds."""
        if not self.config.int8_tensors:
            return tensor
        return self._quantizer(tensor, base, 8, fixed)

    def _activation(self, function, x, name):
        def unique(base):
            return self._unique(f"{name}_{base}")

        return activations.int8_activation(
            function, x, self._internal_quantizer, unique
        )

    def _call(self, step, args, kwargs):
        outputs = self._replay(step, args, kwargs)
        layer, source = step.layer, self.grid_of.get(id(args[0])) if args else None
        if source is None or not hasattr(outputs, "shape"):
            return outputs
        if step.outputs[0] in self.plan.rounded_on_input_grid:
            rounding = SharedGrid(
                source=source.name,
                bits=source.bits,
                mode="hard",
                name=self._unique(f"{layer.name}_grid"),
            )
            outputs = rounding(outputs)
            self.grid_of[id(outputs)] = source
        elif isinstance(layer, SAME_GRID) or is_relu(layer):
            self.grid_of[id(outputs)] = source
        return outputs

    def _replay(self, step, args, kwargs):
        layer = step.layer
        key = id(step)
        if key in self.plan.folded_into:
            target = self.plan.folded_into[key].layer.name
            self._row(layer, "folded", f"folded into {target!r}")
            return args[0]
        if key in self.plan.quantized:
            return self._quantized_call(step, args, kwargs)
        affine = lowering.normalization_affine(layer)
        if affine is not None:
            self._row(layer, "passthrough", "as a Rescaling: one op in the int8 file")
            scale, offset = ([float(v) for v in a] for a in affine)
            rescaling = keras.layers.Rescaling(
                scale, offset, name=self._unique(layer.name)
            )
            return rescaling(args[0])
        function = activations.activation_function(layer)
        if key in self.plan.float_reason:
            self._row(layer, "float", self.plan.float_reason[key])
        elif activations.describe(function) and len(args) == 1 and not kwargs:
            self._row(layer, "passthrough", activations.describe(function))
            return self._activation(function, args[0], layer.name)
        elif id(layer) not in self.clones:
            self._row(
                layer,
                "passthrough",
                self.plan.notes.get(id(layer), ""),
                type_name=_type_name(layer),
            )
        return self._clone(layer, args, kwargs)

    def _row(self, layer, status, reason="", name=None, type_name=None, **fields):
        self.rows.append(
            LayerReport(
                name or layer.name,
                type_name or type(layer).__name__,
                status,
                reason,
                **fields,
            )
        )

    def _clone(self, layer, args, kwargs):
        if id(layer) in self.clones:
            return self.clones[id(layer)](*args, **kwargs)
        if not isinstance(layer, keras.layers.Layer):
            # A keras.ops node (`x + 3.0`): stateless, called as it is.
            self.clones[id(layer)] = layer
            self.names.add(layer.name)
            return layer(*args, **kwargs)
        config = layer.get_config()
        config["name"] = self._unique(layer.name)
        clone = type(layer).from_config(config)
        outputs = clone(*args, **kwargs)
        if layer.weights:
            clone.set_weights(layer.get_weights())
            # Adapted preprocessing layers (Normalization) derive their mean
            # and variance from these weights in `finalize_state`, as Keras
            # does after loading a saved model.
            if hasattr(clone, "finalize_state"):
                clone.finalize_state()
        self.clones[id(layer)] = clone
        return outputs

    def _quantized_call(self, step, args, kwargs):
        layer = step.layer
        position = self.plan.position[id(step)]
        affine = id(step) in self.plan.affine
        bits = 8 if affine else self.config.weight_bits_for(position)
        bn_step = self.plan.folded_bn.get(id(step))
        if bn_step is not None:
            kernel, bias = bn_folding.fold_batchnorm(layer, bn_step.layer)
        else:
            kernel = ops.convert_to_numpy(layer.kernel)
            bias = None if layer.bias is None else ops.convert_to_numpy(layer.bias)
        config = layer.get_config()
        # An activation the int8 op cannot fuse runs as an op of its own,
        # with a grid on its input as in the file.
        function = layer.activation
        split = not activations.is_fusable(function)
        config.update(
            name=self._unique(layer.name),
            use_bias=bias is not None,
            weight_bits=bits,
            # 8-bit weights use int8's symmetric [-127, 127] grid, so they fit a
            # TFLite int8 tensor exactly (an asymmetric 8-bit grid does not).
            weight_symmetric=self.config.weight_symmetric or bits == 8,
            weight_per_channel=self.config.weight_per_channel,
            mode="hard",
        )
        if split:
            config["activation"] = None
        qlayer = quantized_class_for(layer).from_config(config)
        outputs = qlayer(*args, **kwargs)
        qlayer.kernel.assign(kernel)
        if bias is not None:
            qlayer.bias.assign(bias)
        qlayer.initialize_weight_quantizer(
            p=self.config.weight_init_norm, weight_range=self.config.weight_range
        )
        notes = [] if position == "inner" or affine else [f"{position} layer"]
        if id(layer) in self.plan.notes:
            notes.append(self.plan.notes[id(layer)])
        if split:
            name = getattr(function, "__name__", str(function))
            notes.append(f"{name} as an op of its own")
            outputs = self._activation(
                function, self._internal_quantizer(outputs, qlayer.name), qlayer.name
            )
        self._row(
            layer,
            "quantized",
            ", ".join(notes),
            weight_bits=bits,
            input_bits=8 if affine else self.config.input_bits_for(position),
            name=qlayer.name,
            weight_sqnr_db=sqnr_db(kernel, _hard_kernel(qlayer)),
        )
        return outputs


def _type_name(layer):
    name = private_api.operation_name(layer)
    return type(layer).__name__ if name is None else f"keras.ops {name}"


def _single(tensors):
    return tensors[0] if len(tensors) == 1 else tensors


def refresh_weight_sqnr(qmodel):
    """Recompute the report's weight SQNR from `qmodel`'s current weights.

    `quantize_model` measures round-to-nearest weights; after
    `reconstruct` learns the rounding, the SQNR of the weights the model
    now uses differs.

    Args:
        qmodel: a model from `quantize_model`.

    Returns:
        The updated `QuantizationReport` (also set on `qmodel`).
    """
    layers = {layer.name: layer for layer in qmodel.layers}
    rows = []
    for row in qmodel.quantization_report:
        if row.status == "quantized":
            qlayer = layers[row.name]
            kernel = ops.convert_to_numpy(qlayer.kernel)
            row = dataclasses.replace(
                row, weight_sqnr_db=sqnr_db(kernel, _hard_kernel(qlayer))
            )
        rows.append(row)
    qmodel.quantization_report = QuantizationReport(rows)
    return qmodel.quantization_report


def _hard_kernel(qlayer):
    step = ops.convert_to_numpy(qlayer.weight_step)
    return qlayer.integer_kernel() * step
