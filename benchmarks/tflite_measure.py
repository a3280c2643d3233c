"""Float `.tflite` twins, latency, and size by kind of `.tflite` files."""

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import keras_sagdq as ks

# Run in a child process under the TensorFlow backend (argv: .keras in, .tflite out).
_CONVERT = """
import sys
import keras
import tensorflow as tf
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
spec = tf.TensorSpec((1, *model.inputs[0].shape[1:]), tf.float32)
function = tf.function(lambda x: model(x), input_signature=[spec])
converter = tf.lite.TFLiteConverter.from_concrete_functions(
    [function.get_concrete_function()], function
)
with open(sys.argv[2], "wb") as f:
    f.write(converter.convert())
"""


def float_tflite(model, path):
    """Write the float model as a float `.tflite` (no quantization); returns `path`.

    Converted by a child process with `KERAS_BACKEND=tensorflow`, so the
    caller may run either backend.
    """
    with tempfile.TemporaryDirectory() as folder:
        keras_path = os.path.join(folder, "float.keras")
        model.save(keras_path)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        subprocess.run(
            [sys.executable, "-c", _CONVERT, keras_path, path], env=env, check=True
        )
    return path


def _ready_interpreter(path, image, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    interpreter.set_tensor(inp["index"], ks.export.verify.to_input(image[None], inp))
    return interpreter


def tflite_latency_ms(paths, image, threads=1, runs=500, warmup=20):
    """Median single-image latency of `.tflite` files (default delegate), in ms.

    The files' invokes alternate (one of each in turn), so a change in the
    machine's speed during the run affects each file alike.

    Returns:
        One median per file, in the order of `paths`.
    """
    interpreters = [_ready_interpreter(p, image, threads) for p in paths]
    times = [[] for _ in interpreters]
    for _ in range(runs + warmup):
        for interpreter, spent in zip(interpreters, times):
            start = time.perf_counter()
            interpreter.invoke()
            spent.append(time.perf_counter() - start)
    return [1000 * float(np.median(spent[warmup:])) for spent in times]


def latency_pair(path, float_path, image, threads=(1, 2)):
    """Latency of a file and of its float twin, interleaved, per thread count.

    Returns `{"latency_ms": .., "float_latency_ms": .., "latency_ms_2_threads":
    .., ...}` and the 1-minute load average (an idle machine is near 0).
    """
    row = {}
    for count in threads:
        suffix = "" if count == 1 else f"_{count}_threads"
        quantized, floating = tflite_latency_ms([path, float_path], image, count)
        row["latency_ms" + suffix] = quantized
        row["float_latency_ms" + suffix] = floating
    row["load_average_1min"] = os.getloadavg()[0]
    return row


def size_breakdown(path):
    """Bytes of a `.tflite` file by kind: weights, biases, quantization metadata, rest.

    The metadata is each quantized tensor's scales (float32) and zero points
    (int64), one per channel for per-channel weights and their biases.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(path)
    sizes = {"weights": 0, "biases": 0, "quantization": 0}
    for tensor in model.subgraphs[0].tensors:
        data = model.buffers[tensor.buffer].data
        count = 0 if data is None else len(data)
        # TensorType 2 is INT32: the biases of an integer file.
        sizes["biases" if tensor.type == 2 else "weights"] += count
        quantization = tensor.quantization
        if quantization is not None and quantization.scale is not None:
            zero_points = quantization.zeroPoint
            sizes["quantization"] += 4 * len(quantization.scale) + 8 * (
                0 if zero_points is None else len(zero_points)
            )
    sizes["rest"] = os.path.getsize(path) - sum(sizes.values())
    return sizes
