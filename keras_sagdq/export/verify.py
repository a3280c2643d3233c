"""`verify_tflite`: run a `.tflite` file and compare it with the Keras model."""

import dataclasses

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
    """

    num_images: int
    top1_agreement: float
    max_error_steps: float
    mean_error_steps: float
    output_step: float

    def __str__(self):
        return (
            f"{self.num_images} images: top-1 agreement "
            f"{100 * self.top1_agreement:.2f} %, "
            f"output error max {self.max_error_steps:.2f} / mean "
            f"{self.mean_error_steps:.3f} "
            f"steps (step {self.output_step:.4g})"
        )


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
    scales. Returns `(outputs, output_step)`.
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
    1000 images: top-1 agreement ... %, output error max ... / mean ... steps ...
    """
    images = np.asarray(images, np.float32)
    lite, step = run_tflite(path, images)
    reference = keras.ops.convert_to_numpy(
        qmodel.predict(images, batch_size=256, verbose=0)
    )
    error = np.abs(lite - reference) / step
    agreement = np.mean(np.argmax(lite, -1) == np.argmax(reference, -1))
    return TFLiteAgreement(
        num_images=len(images),
        top1_agreement=float(agreement),
        max_error_steps=float(error.max()),
        mean_error_steps=float(error.mean()),
        output_step=step,
    )
