"""Does the same GENIE synthesis, run twice in one process, give the same images?

    cd benchmarks
    KERAS_BACKEND=tensorflow BATCH=64 STEPS=1,2,5,10 python repeatability.py
    KERAS_BACKEND=tensorflow DETERMINISM=1 ONE_THREAD=1 python repeatability.py

Prints, per step count, the largest pixel difference between two calls with
the same seed (`mobilenet_unit_range`, fixed input space). `DETERMINISM=1`
turns on TensorFlow's op determinism, `ONE_THREAD=1` limits TensorFlow to
one thread. Why it exists: the accuracy tier's numbers moved between runs
of the same seed (docs/benchmarks.md, "Accuracy tier").
"""

import os

import numpy as np

if os.environ.get("ONE_THREAD") == "1" or os.environ.get("DETERMINISM") == "1":
    import tensorflow as tf

    if os.environ.get("ONE_THREAD") == "1":
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    if os.environ.get("DETERMINISM") == "1":
        tf.config.experimental.enable_op_determinism()

import keras  # noqa: E402

import keras_sagdq as ks  # noqa: E402


def main():
    batch = int(os.environ.get("BATCH", 64))
    steps_list = [int(s) for s in os.environ.get("STEPS", "1,2,5,10,20").split(",")]
    model = ks.models.load_shipped_model("mobilenet_unit_range")
    print(f"backend {keras.backend.backend()}, batch {batch}")
    for steps in steps_list:
        images = [
            np.asarray(
                ks.synthesize(
                    model,
                    batch,
                    batch_size=batch,
                    steps=steps,
                    verbose=0,
                    input_mean=[0.3],
                    input_std=[0.35],
                    seed=1,
                )
            )
            for _ in range(2)
        ]
        difference = np.abs(images[0] - images[1]).max()
        print(f"steps {steps}: max |difference| {difference:.3g}")


if __name__ == "__main__":
    main()
