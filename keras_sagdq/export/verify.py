"""`verify_tflite`: run a `.tflite` file and compare it with the Keras model."""

import dataclasses
import warnings

import keras
import numpy as np

from keras_sagdq import private_api


@dataclasses.dataclass
class TFLiteAgreement:
    """How closely a `.tflite` file reproduces the quantized Keras model.

    Attributes:
        num_images: images compared.
        top1_agreement: fraction of images with the same arg-max class.
        max_error_steps: largest |tflite - keras| output difference, in units
            of the file's output quantization step.
        mean_error_steps: mean of the same.
        output_step: the output quantization step (scale).
        max_logit_gap: largest |tflite - keras| output difference, in the
            outputs' own units.
        partitions: delegate partitions of the file (`delegate_partitions`;
            1 is the best case).
        ops_outside_delegate: names of the ops the CPU delegate (XNNPACK)
            left to TFLite's own kernels, each once.
        top1_agreement_within_step: fraction of images where the file's
            output for the Keras model's class is within one output step of
            the file's largest output: the class agrees up to ties the file
            cannot resolve (a softmax over 1000 near-equal classes rounds
            them all to one level).
        values_within_step: fraction of output values within one output
            step of the Keras model's.
    """

    num_images: int
    top1_agreement: float
    max_error_steps: float
    mean_error_steps: float
    output_step: float
    max_logit_gap: float = float("nan")
    partitions: int = -1
    ops_outside_delegate: tuple = ()
    top1_agreement_within_step: float = float("nan")
    values_within_step: float = float("nan")

    def __str__(self):
        text = (
            f"{self.num_images} images: top-1 agreement "
            f"{100 * self.top1_agreement:.2f} %, "
            f"output error max {self.max_error_steps:.2f} / mean "
            f"{self.mean_error_steps:.3f} "
            f"steps (step {self.output_step:.4g}), "
            f"{self.partitions} delegate partition(s)"
        )
        if self.ops_outside_delegate:
            text += f", outside it: {', '.join(self.ops_outside_delegate)}"
        return text


def to_input(images, details):
    """`images` as the interpreter input `details` expect (int8-quantized if int8)."""
    x = np.asarray(images, np.float32)
    if details["dtype"] == np.int8:
        scale, zero = details["quantization"]
        x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
    return x


def run_tflite(path, images):
    """Outputs of a `.tflite` file on `images`, one image at a time, as float32.

    int8 inputs and outputs are quantized and dequantized with the file's
    scales.

    Args:
        path: the `.tflite` file.
        images: float32 `(N, H, W, C)` in the model's input space.

    Returns:
        `(outputs, output_step)`: the outputs as float32, and the file's
        output quantization step.

    Example:

    >>> ks.export_tflite(qmodel, "model.tflite", representative_data=images)
    >>> outputs, step = ks.run_tflite("model.tflite", images[:2])
    >>> outputs.shape
    (2, 10)
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    outputs = []
    for image in np.asarray(images, np.float32):
        interpreter.set_tensor(inp["index"], to_input(image[None], inp))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        outputs.append(y[0])
    return np.stack(outputs), _output_step(interpreter, out)


def input_range_of(path):
    """The input range `(low, high)` a `.tflite` file quantizes its input to.

    Inputs outside it are clipped by the file. Read from the input's int8
    scale and zero point (of the QUANTIZE op after a float input).

    Args:
        path: a `.tflite` file written by `export_tflite`.

    Returns:
        `(low, high)` floats.

    Raises:
        ValueError: if the file's input is not quantized to int8.

    Example:

    >>> path = ks.export_tflite(qmodel, "model.tflite", representative_data=images)
    >>> low, high = ks.export.input_range_of(path)
    >>> print(high > low)
    True
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (inp,) = interpreter.get_input_details()
    quantization = inp["quantization"] if inp["dtype"] == np.int8 else None
    if quantization is None:
        for op in private_api.tflite_ops(interpreter):
            if op["op_name"] == "QUANTIZE" and inp["index"] in list(op["inputs"]):
                details = private_api.tflite_tensor(interpreter, op["outputs"][0])
                if details["dtype"] == np.int8:
                    quantization = details["quantization"]
    if quantization is None:
        raise ValueError(
            f"The input of {str(path)!r} is not quantized to int8; it has no range."
        )
    scale, zero_point = quantization
    return float(scale * (-128 - zero_point)), float(scale * (127 - zero_point))


def ops_outside_delegate(path):
    """Names of the ops the default CPU delegate (XNNPACK) did not take, each once.

    Args:
        path: a `.tflite` file.

    Returns:
        A tuple of op names (e.g. `("HARD_SWISH",)`), in file order; empty
        when one partition holds every op.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    ops = private_api.tflite_ops(interpreter)
    # The op list keeps the model's own ops beside the delegate's nodes. An
    # op the delegate took writes a partition's output or a tensor inside
    # it; one it left writes a tensor that a partition, the model's output
    # or another op left out reads.
    nodes = [op for op in ops if op["op_name"] == "DELEGATE"]
    produced = {int(i) for op in nodes for i in op["outputs"]}
    read = {int(i) for op in nodes for i in op["inputs"]}
    read.update(int(d["index"]) for d in interpreter.get_output_details())
    outside = []
    for op in reversed([op for op in ops if op["op_name"] != "DELEGATE"]):
        outputs = {int(i) for i in op["outputs"]}
        if outputs & produced or not outputs & read:
            continue
        outside.append(op["op_name"])
        read.update(int(i) for i in op["inputs"])
    names = []
    for name in reversed(outside):
        # QUANTIZE / DEQUANTIZE at a float input or output always stay out.
        if name not in ("QUANTIZE", "DEQUANTIZE") and name not in names:
            names.append(name)
    return tuple(names)


def delegate_partitions(path):
    """The number of partitions the default CPU delegate (XNNPACK) makes of a file.

    Each partition is a run of ops the delegate executes as one node; ops
    it does not take run on TFLite's own kernels between partitions, and
    every hand-over costs time. One partition is the best case.

    Args:
        path: a `.tflite` file.

    Returns:
        The number of delegate nodes (0 if the delegate took nothing).

    Example:

    >>> path = ks.export_tflite(qmodel, "model.tflite", representative_data=images)
    >>> print(ks.export.delegate_partitions(path) >= 1)
    True
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    ops = private_api.tflite_ops(interpreter)
    return sum(op["op_name"] == "DELEGATE" for op in ops)


def _output_step(interpreter, out):
    if out["dtype"] == np.int8:
        return float(out["quantization"][0])
    # A float output comes from a DEQUANTIZE op; its input holds the step.
    for op in private_api.tflite_ops(interpreter):
        if op["op_name"] == "DEQUANTIZE" and out["index"] in list(op["outputs"]):
            details = private_api.tflite_tensor(interpreter, op["inputs"][0])
            return float(details["quantization"][0])
    return float("nan")


def verify_tflite(path, qmodel, images):
    """Run the `.tflite` file on `images` and compare it with `qmodel`.

    Args:
        path: a file written by `export_tflite`.
        qmodel: the quantized Keras model it was exported from.
        images: images `(N, H, W, C)` in the model's input space.

    Returns:
        A `TFLiteAgreement`.

    Example:

    >>> path = ks.export_tflite(qmodel, "model.tflite", representative_data=images)
    >>> print(ks.verify_tflite(path, qmodel, x_test[:1000]))
    1000 images: top-1 agreement ... %, output error max ... / mean ... steps
    (step ...), 1 delegate partition(s)
    """
    images = np.asarray(images, np.float32)
    lite, step = run_tflite(path, images)
    reference = keras.ops.convert_to_numpy(
        qmodel.predict(images, batch_size=256, verbose=0)
    )
    gap = np.abs(lite - reference)
    error = gap / step
    agreement = np.mean(np.argmax(lite, -1) == np.argmax(reference, -1))
    chosen = np.take_along_axis(lite, np.argmax(reference, -1)[..., None], -1)[..., 0]
    within_step = np.mean(chosen >= lite.max(-1) - step * (1 + 1e-3))
    return TFLiteAgreement(
        num_images=len(images),
        top1_agreement=float(agreement),
        max_error_steps=float(error.max()),
        mean_error_steps=float(error.mean()),
        output_step=step,
        max_logit_gap=float(gap.max()),
        partitions=delegate_partitions(path),
        ops_outside_delegate=ops_outside_delegate(path),
        top1_agreement_within_step=float(within_step),
        values_within_step=float(np.mean(error <= 1 + 1e-3)),
    )


@dataclasses.dataclass
class Divergence:
    """Where a file parts from its Keras model (`first_divergence`).

    Attributes:
        sentence: what differs, where, by how much; also the `str`.
        local: True when the file computes a grid differently from the same
            inputs (an export fault); False when every op agrees and only
            rounding near ties, amplified by the network, separates them.
    """

    sentence: str
    local: bool

    def __str__(self):
        return self.sentence


def first_divergence(path, qmodel, images, tolerance_steps=1.0):
    """Where the file and the Keras model part, and whether an op is to blame.

    Each `ActivationQuantizer` of `qmodel` is matched with the file's int8
    tensor of the same shape and scale that is closest to it on `images`
    (every tensor kept, the delegate run op by op). Two checks follow, in
    graph order:

    1. Locally: each grid is recomputed by the Keras model from the file's
       own values of the grids just before it. A grid that differs then is
       computed differently by the file: that is a fault of the export.
    2. End to end: the first grid where the Keras model's own values and
       the file's differ. When no grid fails the local check, a difference
       here is one-step rounding near ties (each runtime rounds a few
       values the other way) that the network amplifies, not an op
       computed differently.

    Args:
        path: a file written by `export_tflite` from `qmodel`.
        qmodel: the quantized Keras model.
        images: a few images `(N, H, W, C)` (each is run separately).
        tolerance_steps: differences up to this many steps, on at most 1 %
            of a tensor's values, are agreement.

    Returns:
        None if every matched grid agrees end to end, else a `Divergence`
        whose sentence names the grid, the layer before it, the file's
        tensor, the share of values that differ and by how many steps at
        most, and which of the two checks failed. Quantizers with no tensor
        of their scale in the file are listed at its end.

    Example:

    >>> print(first_divergence("model.tflite", qmodel, images[:8]))
    None
    """
    from keras_sagdq.layers import activation_quantizers

    images = np.asarray(images, np.float32)
    quantizers = activation_quantizers(qmodel)
    probe = keras.Model(qmodel.input, [q.output for q in quantizers])
    reference = [keras.ops.convert_to_numpy(v) for v in probe(images)]
    matched, unmatched = _match_grids(path, quantizers, reference, images)

    def beyond(diff):
        # Off by one step on a few values is kernel rounding near ties.
        return diff.max() > tolerance_steps + 0.5 or np.mean(diff > 0.5) > 0.01

    def describe(quantizer, name, diff):
        source = private_api.producing_layer(quantizer.input)
        return (
            f"{quantizer.name!r} (the grid after {source.name!r}) differs from the "
            f"file's tensor {name!r} on {100 * np.mean(diff > 0.5):.1f} % of "
            f"values, by up to {diff.max():.0f} steps"
        )

    for quantizer in quantizers:
        if quantizer.name not in matched:
            continue
        before = _grids_before(quantizer, matched)
        if not before:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                local = keras.Model([q.output for q in before], quantizer.output)
            expected = keras.ops.convert_to_numpy(
                local([matched[q.name][0] for q in before])
            )
        except Exception:  # noqa: BLE001 - a diagnosis: skip what cannot be cut
            continue
        got, name = matched[quantizer.name]
        diff = np.abs(got - expected) / _step(quantizer)
        if beyond(diff):
            sentence = (
                f"{describe(quantizer, name, diff)} when the Keras model computes it "
                "from the file's own values of the grids before it ("
                f"{', '.join(repr(q.name) for q in before)}): the file computes "
                "this part of the model differently"
            )
            return Divergence(sentence, local=True)
    for quantizer, expected in zip(quantizers, reference):
        if quantizer.name not in matched:
            continue
        got, name = matched[quantizer.name]
        diff = np.abs(got - expected) / _step(quantizer)
        if beyond(diff):
            sentence = describe(quantizer, name, diff) + (
                "; yet every grid agrees when computed from the file's own values "
                "of the grids before it, so this is rounding near ties (one step "
                "on a few values) that the network amplifies, not an op the file "
                "computes differently"
            )
            if unmatched:
                sentence += (
                    "; grids with no int8 tensor of their step in the file: "
                    f"{', '.join(unmatched)}"
                )
            return Divergence(sentence, local=False)
    return None


def _step(quantizer):
    return np.float32(keras.ops.convert_to_numpy(quantizer.step))


def _match_grids(path, quantizers, reference, images):
    """`({quantizer name: (file values, tensor name)}, [unmatched names])`.

    Each quantizer gets the file's int8 tensor of its step and size whose
    values are closest to the Keras model's on `images`.
    """
    from ai_edge_litert.interpreter import Interpreter

    # Every tensor kept: the delegate then runs op by op, with the kernels
    # `verify_tflite` runs (TFLite's own kernels round some ops differently).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "intended for debugging": it is
        interpreter = Interpreter(
            model_path=str(path), experimental_preserve_all_tensors=True
        )
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    candidates = {}  # scale -> [(index, name, zero point)]
    for details in interpreter.get_tensor_details():
        scale, zero_point = details["quantization"]
        if details["dtype"] == np.int8 and scale > 0:
            key = np.float32(scale)
            entry = (details["index"], details["name"], zero_point)
            candidates.setdefault(key, []).append(entry)
    values = {}
    for image in images:
        interpreter.set_tensor(inp["index"], to_input(image[None], inp))
        interpreter.invoke()
        for entries in candidates.values():
            for index, _, zero_point in entries:
                try:
                    raw = interpreter.get_tensor(index)
                except ValueError:  # freed or not computed
                    continue
                if raw.ndim == 0:
                    continue
                values.setdefault(index, []).append(raw.astype(np.float32) - zero_point)
    matched, unmatched = {}, []
    for quantizer, expected in zip(quantizers, reference):
        step = _step(quantizer)
        best = None
        for scale, entries in candidates.items():
            if not np.isclose(scale, step, rtol=1e-5):
                continue
            for index, name, _ in entries:
                got = values.get(index)
                if got is None or len(got) != len(images):
                    continue
                got = np.concatenate(got) * scale
                if got.size != expected.size:
                    continue
                # Feature vectors are (N, 1, 1, C) in the file.
                got = got.reshape(expected.shape)
                error = np.abs(got - expected).max()
                if best is None or error < best[0]:
                    best = (error, got, name)
        if best is None:
            unmatched.append(quantizer.name)
        else:
            matched[quantizer.name] = best[1:]
    return matched, unmatched


def _grids_before(quantizer, matched):
    """The matched quantizers whose outputs alone determine `quantizer`'s input.

    Walks back from the quantizer's input through the layers before it,
    stopping at activation quantizers. None when the walk reaches the
    model's input or a grid the file has no tensor for.
    """
    from keras_sagdq.layers import ActivationQuantizer

    found, seen, stack = [], set(), [quantizer.input]
    while stack:
        tensor = stack.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        operation = private_api.producing_layer(tensor)
        if isinstance(operation, ActivationQuantizer):
            if operation.name not in matched:
                return None
            if operation not in found:
                found.append(operation)
            continue
        inputs = private_api.call_inputs(tensor)
        if not inputs:  # the model's input
            return None
        stack.extend(inputs)
    return found
