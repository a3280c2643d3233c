"""keras_sagdq: zero-shot low-bit quantization of Keras 3 image classifiers.

The top level holds the workflow: `quantize` does it all in one call
(synthesize calibration images, quantize, calibrate); each step is also a
function of its own, and `export_tflite` writes the integer file. Layer
classes live in `ks.layers`, the quantizer math in `ks.quantizers`, shipped
models in `ks.models`, data sets in `ks.datasets`, TFLite export in
`ks.export`, synthesis parts in `ks.synthesis`.

Example:

>>> import keras_sagdq as ks
>>> model = ks.models.load_reference_model("resnet20_fashion_mnist")
>>> result = ks.quantize(model, weight_bits=4, activation_bits=4, num_samples=16,
...                      synthesis={"steps": 2}, reconstruction={"steps": 2},
...                      verbose=0)
>>> result.data.shape
(16, 28, 28, 1)
>>> qmodel = ks.quantize_model(model, ks.QuantConfig(weight_bits=4, activation_bits=4))
>>> images = ks.synthesize(model, num_samples=8, steps=2, verbose=0)
>>> ks.calibrate_activations(qmodel, images)
"""

from keras_sagdq import datasets
from keras_sagdq import export
from keras_sagdq import input_range
from keras_sagdq import layers
from keras_sagdq import models
from keras_sagdq import quantizers
from keras_sagdq import synthesis
from keras_sagdq.calibration import calibrate_activations
from keras_sagdq.config import QuantConfig
from keras_sagdq.export import export_tflite
from keras_sagdq.export import run_tflite
from keras_sagdq.export import verify_tflite
from keras_sagdq.fidelity import output_fidelity
from keras_sagdq.graph import LayerReport
from keras_sagdq.graph import QuantizationReport
from keras_sagdq.graph import quantize_model
from keras_sagdq.integer_alignment import align_biases
from keras_sagdq.layers import quantization_off
from keras_sagdq.layers import set_mode
from keras_sagdq.pipeline import QuantizationResult
from keras_sagdq.pipeline import quantize
from keras_sagdq.reconstruction import ReconstructionConfig
from keras_sagdq.reconstruction import reconstruct
from keras_sagdq.synthesis import SynthesisConfig
from keras_sagdq.synthesis import SynthesisWarning
from keras_sagdq.synthesis import save_image_grid
from keras_sagdq.synthesis import synthesize
from keras_sagdq.version import __version__

__all__ = [
    "LayerReport",
    "QuantConfig",
    "QuantizationReport",
    "QuantizationResult",
    "ReconstructionConfig",
    "SynthesisConfig",
    "SynthesisWarning",
    "__version__",
    "align_biases",
    "calibrate_activations",
    "datasets",
    "export",
    "export_tflite",
    "input_range",
    "layers",
    "models",
    "output_fidelity",
    "quantization_off",
    "quantize",
    "quantize_model",
    "quantizers",
    "reconstruct",
    "run_tflite",
    "save_image_grid",
    "set_mode",
    "synthesis",
    "synthesize",
    "verify_tflite",
]
