"""`export_tflite`: a quantized Keras model as a full-integer TFLite file."""

import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_sagdq import private_api
from keras_sagdq.export.verify import first_divergence
from keras_sagdq.export.verify import verify_tflite
from keras_sagdq.input_range import file_input_range
from keras_sagdq.layers import weight_layers


def export_tflite(
    qmodel,
    path,
    representative_data=None,
    int8_io=False,
    low_bit_weights=False,
    activation_grid="exact",
    input_range=None,
    max_samples=256,
    conversion_timeout=1800,
    min_top1_agreement=0.99,
):
    """Write `qmodel` as an integer TFLite model (int8 ops, int32 biases).

    The file holds the model's own weight integers and steps (hard rounding)
    and its activation steps. Activations of fewer than 8 bits are stored in
    int8 tensors: by default with the model's step and clipped to its b-bit
    range, so the file computes the model's values; with
    `activation_grid="range"` as int8 over the learned range (a finer grid,
    one op fewer per quantizer). Tensors the Keras model keeps float (layer
    outputs feeding no quantizer, the logits) get 8-bit ranges observed on
    `representative_data`. See docs/deployment.md.

    Works under both backends: under torch the model is saved to a temporary
    `.keras` file and converted in a child process with
    `KERAS_BACKEND=tensorflow`.

    Args:
        qmodel: a calibrated model from `keras_sagdq.quantize_model`.
        path: the `.tflite` file to write.
        representative_data: images `(N, H, W, C)` in the model's input space
            (the calibration images); the first `max_samples` set the
            observed ranges.
        int8_io: if True, the file's input and output are int8 (their scales
            are in the interpreter's details); else float32 with quantize and
            dequantize ops at the ends.
        low_bit_weights: pack the weights of Conv2D and Dense layers whose
            integers fit int4's `[-7, 7]` (weights of 2 and 3 bits, symmetric
            4-bit weights) as int4 (`_experimental_low_bit_qat`); other
            layers stay int8. The file gets smaller but slower: TFLite's
            XNNPACK delegate does not take int4 convolutions
            (docs/deployment.md).
        activation_grid: `"exact"` or `"range"` (see above).
        input_range: `(low, high)` of the model's inputs, e.g. `(0, 1)` for
            pixels in [0, 1]. Default: `keras_sagdq.input_range.
            file_input_range`: the grid of the model's input quantizer
            (`int8_tensors`), else what the model declares (a leading
            `Rescaling(1/255)` or `Normalization`), else the smallest of
            [0, 1], [-1, 1], [0, 255] that holds `representative_data`,
            else its range widened by a quarter of its span on each side;
            synthetic data rarely reaches the extremes of real pixels and
            must not make the file clip real inputs.
        max_samples: images used to observe ranges.
        conversion_timeout: seconds the child process that converts under a
            non-TensorFlow backend may take before it is stopped.
        min_top1_agreement: the written file is run on the representative
            images (the first `max_samples`) and compared with `qmodel`; if
            they agree on the class of fewer than this fraction of them (a
            class within one output step of the file's top counts: a tie the
            file cannot resolve), the export raises, naming the first
            activation grid where the two part
            (`keras_sagdq.export.first_divergence`). None skips the check.

    Returns:
        `path`.

    Raises:
        ValueError: without representative data, for a model that is not
            quantized or not calibrated, or weights that do not fit int8.
        ImportError: if TensorFlow is not installed.
        RuntimeError: if the converter rejects the graph (naming its error),
            if the child process that converts fails or runs past
            `conversion_timeout`, or if the written file agrees with `qmodel`
            on fewer than `min_top1_agreement` of the images (the file is
            left in place for inspection).

    Example:

    >>> ks.export_tflite(qmodel, "model_w4a4.tflite", representative_data=images)
    'model_w4a4.tflite'
    >>> agreement = ks.verify_tflite("model_w4a4.tflite", qmodel, x_test[:500])
    """
    if not weight_layers(qmodel):
        raise ValueError(
            f"Model {qmodel.name!r} has no quantized layer; call quantize_model first."
        )
    if representative_data is None:
        raise ValueError(
            "`representative_data` is required: the ranges of tensors the quantized "
            "model keeps float (layer outputs, the logits) are observed on it. Pass "
            "the calibration images. Received: representative_data=None"
        )
    images = np.asarray(representative_data, np.float32)[:max_samples]
    expected = tuple(qmodel.inputs[0].shape[1:])
    if (
        images.ndim != 4
        or images.shape[1:] != expected
        or not np.all(np.isfinite(images))
    ):
        raise ValueError(
            "`representative_data` must be finite images of shape (N, "
            f"{', '.join(map(str, expected))}). "
            f"Received: representative_data with shape {images.shape}"
        )
    if input_range is None:
        input_range = file_input_range(qmodel, images)[:2]
    if not float(input_range[1]) > float(input_range[0]):
        raise ValueError(
            "`input_range` must be (low, high) with high > low. "
            f"Received: input_range={input_range!r}"
        )
    path = os.fspath(path)
    if keras.backend.backend() != "tensorflow":
        options = {
            "int8_io": int8_io,
            "low_bit_weights": low_bit_weights,
            "activation_grid": activation_grid,
            "input_range": [float(v) for v in input_range],
            "min_top1_agreement": None,
        }
        _export_in_child(qmodel, path, images, options, conversion_timeout)
        return check_agreement(path, qmodel, images, min_top1_agreement)
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError(
            "TFLite export needs TensorFlow (`pip install tensorflow-cpu`)."
        ) from None
    from keras_sagdq.export.fake_quant_graph import FakeQuantGraph

    graph = FakeQuantGraph(qmodel, activation_grid, low_bit_weights)
    low, high = (float(v) for v in input_range)
    # Two constant images at the ends of the input range widen every
    # observed range (and the converter's own input calibration) to what
    # real inputs can reach.
    ends = np.stack(
        [np.full(expected, low, np.float32), np.full(expected, high, np.float32)]
    )
    calibration = np.concatenate([images, ends])
    graph.observe(calibration)
    spec = tf.TensorSpec((1, *expected), tf.float32)
    function = tf.function(lambda x: graph(x), input_signature=[spec])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if low_bit_weights:
        private_api.pack_low_bit_weights(converter)
    try:
        data = converter.convert()
    except Exception as error:  # the converter raises its own error types
        message = str(error).strip().splitlines()
        raise RuntimeError(
            f"TFLite's converter rejected the quantized graph of {qmodel.name!r}: "
            f"{' '.join(m.strip() for m in message[-3:])[:800]} (see the "
            "quantization report for layers kept float; 'same scale constraint' "
            "means an op whose output must keep its input's grid, such as an "
            "average pooling, got a grid of its own)"
        ) from error
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return check_agreement(path, qmodel, images, min_top1_agreement)


def check_agreement(path, qmodel, images, min_top1_agreement):
    """Raise if the file at `path` does not compute `qmodel` on `images`; else `path`.

    Raises:
        RuntimeError: naming the agreement, the first diverging activation
            grid, and how to skip the check.
    """
    if min_top1_agreement is None:
        return path
    agreement = verify_tflite(path, qmodel, images)
    if agreement.top1_agreement_within_step >= min_top1_agreement:
        return path
    where = first_divergence(path, qmodel, images[:8])
    if where is None:
        cause = (
            "no activation grid of the model differs by more than a step. The "
            "file is kept for inspection; please report the model's layers."
        )
    elif where.local:
        cause = (
            f"{where}. The file is kept for inspection; please report the "
            "model's layers."
        )
    else:
        cause = (
            f"{where}. Skip this check to keep the file if outputs this close "
            "serve you."
        )
    raise RuntimeError(
        f"The written file {path!r} does not compute the Keras model "
        f"{qmodel.name!r}: it agrees on the class of "
        f"{100 * agreement.top1_agreement:.1f} % of {agreement.num_images} "
        f"representative images (output error up to "
        f"{agreement.max_error_steps:.0f} steps). First difference: {cause} "
        f"Received: min_top1_agreement={min_top1_agreement!r} (None skips this check)"
    )


def _export_in_child(qmodel, path, images, options, timeout):
    # Keras' torch backend cannot trace to TensorFlow; a TensorFlow-backend
    # process loads the saved model (outputs match to ~1e-7) and converts it.
    with tempfile.TemporaryDirectory() as folder:
        model_path = os.path.join(folder, "model.keras")
        images_path = os.path.join(folder, "images.npy")
        options_path = os.path.join(folder, "options.json")
        qmodel.save(model_path)
        np.save(images_path, images, allow_pickle=False)
        with open(options_path, "w") as f:
            json.dump(options, f)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        command = [
            sys.executable,
            "-m",
            "keras_sagdq.export.convert",
            model_path,
            os.path.abspath(path),
            images_path,
            options_path,
        ]
        try:
            result = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                "TFLite conversion in the TensorFlow child process did not finish "
                f"within {timeout} s and was stopped; pass a larger "
                f"`conversion_timeout`. Received: conversion_timeout={timeout!r}"
            ) from None
    if result.returncode != 0:
        if "No module named 'tensorflow'" in result.stderr:
            raise ImportError(
                "TFLite export needs TensorFlow (`pip install tensorflow-cpu`)."
            )
        raise RuntimeError(
            "TFLite conversion in the TensorFlow child process failed "
            f"(exit status {result.returncode}):\n" + result.stderr[-3000:]
        )
    return path
