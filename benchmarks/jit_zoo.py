"""Does `jit_compile=True` synthesize on every shipped model? (issue 15)

    KERAS_BACKEND=tensorflow python benchmarks/jit_zoo.py
    KERAS_BACKEND=torch python benchmarks/jit_zoo.py

Three GENIE steps on 8 images per model, uncompiled and compiled, with the
same seed; prints the seconds of each (compiling included) and the largest
pixel difference between the two, or the error where compiling fails.
"""

import time

import numpy as np

import keras_sagdq as ks
from keras_sagdq.models.zoo import ZOO_MODELS

names = list(ZOO_MODELS) + ["mobilenet_v2_fashion_mnist", "resnet20_fashion_mnist"]
for name in names:
    model = ks.models.load_shipped_model(name)
    result = {}
    for jit in (False, True):
        start = time.time()
        try:
            images = ks.synthesize(
                model,
                8,
                batch_size=8,
                steps=3,
                verbose=0,
                seed=0,
                input_mean=[0.3],
                input_std=[0.35],
                jit_compile=jit,
            )
            result[jit] = f"{time.time() - start:.1f} s", np.asarray(images)
        except Exception as error:  # report every model, whatever fails
            result[jit] = f"{type(error).__name__}: {str(error)[:200]}", None
    (plain, a), (compiled, b) = result[False], result[True]
    if a is not None and b is not None:
        compiled += (
            f", max |difference| {np.abs(a - b).max():.3g} of {np.abs(a).max():.3g}"
        )
    print(f"{name}: uncompiled {plain} | compiled {compiled}", flush=True)
