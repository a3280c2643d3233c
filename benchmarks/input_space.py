"""How close the inferred input space is to the truth, for every shipped model.

    KERAS_BACKEND=tensorflow python benchmarks/input_space.py

For each reference and zoo model: the true per-channel mean and std of the
Fashion-MNIST training pixels in that model's input convention, what the
model declares (a `Normalization` layer), the closed-form first guess and the
inferred values (`infer_input_space`, default settings, seed 0), with the
seconds taken. Rows go to benchmarks/input_space.json (a rerun
replaces a model's row) and a table is printed.
"""

import os
import time

import keras
from absl import app
from absl import flags
from provenance import git_commit
from provenance import save_row

from keras_sagdq.datasets import load_fashion_mnist
from keras_sagdq.models import REFERENCE_MODELS
from keras_sagdq.models import load_shipped_model
from keras_sagdq.models import shipped_model_input
from keras_sagdq.models import zoo
from keras_sagdq.synthesis import BatchNormProbe
from keras_sagdq.synthesis import declared_input_space
from keras_sagdq.synthesis import infer_input_space
from keras_sagdq.synthesis.input_space import affine_estimate

_HERE = os.path.dirname(os.path.abspath(__file__))

_MODELS = flags.DEFINE_list("models", [*REFERENCE_MODELS, *zoo.ZOO_MODELS], "Models.")
_RESULTS = flags.DEFINE_string(
    "results", os.path.join(_HERE, "input_space.json"), "JSON results file."
)


def main(argv):
    del argv
    pixels, _ = load_fashion_mnist("train")
    for name in _MODELS.value:
        model = load_shipped_model(name)
        x = shipped_model_input(pixels[:10000], name)
        declared = declared_input_space(model)
        guess = affine_estimate(BatchNormProbe(model))
        start = time.time()
        inferred = infer_input_space(model, seed=0)
        row = dict(
            model=name,
            commit=git_commit(),
            backend=keras.backend.backend(),
            seed=0,
            true_mean=float(x.mean()),
            true_std=float(x.std()),
            declared=None if declared is None else declared.to_dict(),
            first_guess=None
            if guess is None
            else [float(guess[0][0]), float(guess[1][0])],
            inferred=inferred.to_dict(),
            seconds=time.time() - start,
        )
        print(row, flush=True)
        rows = save_row(_RESULTS.value, row, ("model",))
    print("| model | true mean / std | declared | first guess | inferred | seconds |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        declared = (
            ""
            if r["declared"] is None
            else "{:.4g} / {:.4g}".format(
                r["declared"]["mean"][0], r["declared"]["std"][0]
            )
        )
        guess = (
            ""
            if r["first_guess"] is None
            else "{:.4g} / {:.4g}".format(*r["first_guess"])
        )
        print(
            f"| {r['model']} | {r['true_mean']:.4g} / {r['true_std']:.4g} | "
            f"{declared} | {guess} "
            f"| {r['inferred']['mean'][0]:.4g} / {r['inferred']['std'][0]:.4g} "
            f"| {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    app.run(main)
