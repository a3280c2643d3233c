"""Child-process entry of `export_tflite` under a non-TensorFlow backend.

KERAS_BACKEND=tensorflow python -m keras_sagdq.export.convert MODEL OUT IMAGES OPTIONS
"""

import json
import os
import sys


def main(argv):
    if len(argv) != 4:
        raise SystemExit(
            "Usage: python -m keras_sagdq.export.convert MODEL OUT IMAGES OPTIONS. "
            f"Received: {len(argv)} arguments"
        )
    model_path, output_path, images_path, options_path = argv
    if os.environ.get("KERAS_BACKEND") != "tensorflow":
        raise SystemExit("Run with KERAS_BACKEND=tensorflow.")
    import keras
    import numpy as np

    import keras_sagdq  # noqa: F401  (registers the quantized layers)
    from keras_sagdq.export.tflite import export_tflite

    qmodel = keras.models.load_model(model_path, safe_mode=True)
    images = np.load(images_path, allow_pickle=False)
    with open(options_path) as f:
        options = json.load(f)
    export_tflite(qmodel, output_path, representative_data=images, **options)


if __name__ == "__main__":
    main(sys.argv[1:])
