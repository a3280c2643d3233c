"""`check_images` on cached synthetic batches, and on a deliberately degenerate batch.

    KERAS_BACKEND=tensorflow python benchmarks/synthesis_checks.py
    KERAS_BACKEND=tensorflow python benchmarks/synthesis_checks.py \
        --degenerate=mobilenet_unit_range

Prints, for every GENIE batch cached under benchmarks/synthetic/ by the
harness, the numbers the degenerate-synthesis warning looks at. With
`--degenerate=MODEL`, also synthesizes 64 images for MODEL in a standardized
input space (mean 0, std 1: what the library assumed before it inferred the
space) and prints the same numbers for them.
"""

import glob
import json
import os
import warnings

import numpy as np
from absl import app
from absl import flags

import keras_sagdq as ks
from keras_sagdq.models import load_shipped_model
from keras_sagdq.models import shipped_model_input
from keras_sagdq.synthesis import BatchNormProbe
from keras_sagdq.synthesis import InputSpace
from keras_sagdq.synthesis import check_images

_HERE = os.path.dirname(os.path.abspath(__file__))

_DEGENERATE = flags.DEFINE_string(
    "degenerate", None, "Also check a degenerate batch of this model."
)
_GRIDS_DIR = flags.DEFINE_string(
    "grids_dir",
    None,
    "If set, also write the first 64 images of each model's first batch there as "
    "genie_<model>.png, with black and white at the model's inputs for real pixels 0 "
    "and 1.",
)


def _line(label, check):
    return (
        f"| {label} | {check.bn_mismatch:.4f} | {check.max_abs_z:.2f} "
        f"| {100 * check.constant_fraction:.0f} % | "
        f"{100 * check.saturated_fraction:.1f} % "
        f"| {'; '.join(check.problems) or 'healthy'} |"
    )


def main(argv):
    del argv
    print("| batch | BN mismatch | max abs z | constant | at min or max | verdict |")
    print("|---|---|---|---|---|---|")
    for folder in sorted(glob.glob(os.path.join(_HERE, "synthetic", "*_genie_*"))):
        name = os.path.basename(folder).split("_genie")[0]
        model = load_shipped_model(name)
        with open(os.path.join(folder, "input_space.json")) as f:
            space = InputSpace.from_dict(json.load(f))
        probe = BatchNormProbe(model)
        paths = sorted(glob.glob(os.path.join(folder, "batch_*.npy")))
        if _GRIDS_DIR.value and paths:
            black, white = (
                float(shipped_model_input(np.float32(v), name)) for v in (0.0, 1.0)
            )
            ks.save_image_grid(
                np.load(paths[0], allow_pickle=False)[:64],
                os.path.join(_GRIDS_DIR.value, f"genie_{name}.png"),
                value_range=(black, white),
            )
        for path in paths:
            check = check_images(np.load(path, allow_pickle=False), probe, space)
            print(_line(f"{name} {os.path.basename(path)[:-4]}", check), flush=True)
    if _DEGENERATE.value:
        model = load_shipped_model(_DEGENERATE.value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images = ks.synthesize(
                model,
                64,
                batch_size=64,
                steps=200,
                input_mean=0.0,
                input_std=1.0,
                verbose=0,
            )
        check = check_images(
            images, BatchNormProbe(model), InputSpace([0.0], [1.0], "given")
        )
        print(_line(f"{_DEGENERATE.value}, standardized space", check))


if __name__ == "__main__":
    app.run(main)
