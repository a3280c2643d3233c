"""keras_sagdq: zero-shot low-bit quantization of Keras 3 image classifiers.

Example:

```python
import keras_sagdq as ks

qmodel = ks.quantize_model(model, ks.QuantConfig(weight_bits=4, activation_bits=4))
ks.calibrate_activations(qmodel, images)
```
"""

from keras_sagdq.calibration import calibrate_activations
from keras_sagdq.config import QuantConfig
from keras_sagdq.graph import LayerReport
from keras_sagdq.graph import QuantizationReport
from keras_sagdq.graph import quantize_model
from keras_sagdq.layers import ActivationQuantizer
from keras_sagdq.layers import QuantConv2D
from keras_sagdq.layers import QuantDense
from keras_sagdq.layers import QuantDepthwiseConv2D
from keras_sagdq.layers import set_mode

__version__ = "0.1.0"

from keras_sagdq.export import export_tflite  # noqa: E402
from keras_sagdq.export import verify_tflite  # noqa: E402
from keras_sagdq.reconstruction import ReconstructionConfig  # noqa: E402
from keras_sagdq.reconstruction import reconstruct  # noqa: E402
from keras_sagdq.synthesis import SynthesisConfig  # noqa: E402
from keras_sagdq.synthesis import save_image_grid  # noqa: E402
from keras_sagdq.synthesis import synthesize  # noqa: E402
