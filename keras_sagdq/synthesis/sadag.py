"""The SADAG pipeline: GENIE warm-up, warm-up quantized model, refinement.

1. Warm-up: GENIE batches, each batch's generator and latents kept.
2. `q0`: the model quantized with `quant_config`, calibrated by a short
   block reconstruction on the warm-up images, then frozen (hard rounding,
   activation quantizers on, no QDrop).
3. Refinement: each batch's generator and latents continue under
   `RefinementTrainer`; the refined images are returned.

With a directory, every stage is saved as it finishes (warm-up batches and
their generator state under `warmup/`, `q0.keras`, refined batches), and a
rerun continues where the last one stopped.

Reference:
    - [Dung et al., 2024. Sharpness-Aware Data Generation for Zero-shot
      Quantization](https://arxiv.org/abs/2510.07018)
"""

import os

import keras
import numpy as np

from keras_sagdq.calibration import calibrate_activations
from keras_sagdq.graph.rewrite import quantize_model
from keras_sagdq.layers import set_mode
from keras_sagdq.reconstruction import reconstruct
from keras_sagdq.synthesis import diagnostics
from keras_sagdq.synthesis.refinement import HeadPair
from keras_sagdq.synthesis.refinement import RefinementTrainer
from keras_sagdq.synthesis.trainer import TrainerCache

_Q0_FILE = "q0.keras"


def warmup_quantized_model(model, images, quant_config, config, seed, verbose):
    """`q0`: `model` quantized and briefly reconstructed on `images`, then frozen.

    Args:
        model: the float model.
        images: the warm-up (GENIE) images.
        quant_config: the `QuantConfig` the final model will use.
        config: the `SynthesisConfig` (`warmup_reconstruction_steps`).
        seed: reconstruction seed.
        verbose: reconstruction verbosity.

    Returns:
        The quantized model in hard mode with activation quantizers on.
    """
    q0 = quantize_model(model, quant_config)
    calibrate_activations(q0, images)
    reconstruct(
        q0,
        model,
        images,
        steps=config.warmup_reconstruction_steps,
        seed=seed,
        verbose=verbose,
    )
    set_mode(q0, "hard", activations=True)
    return q0


def load_or_make_q0(model, images, quant_config, config, seed, directory, verbose):
    """`warmup_quantized_model`, saved to (and reused from) `directory`."""
    path = None if directory is None else os.path.join(directory, _Q0_FILE)
    if path is not None and os.path.exists(path):
        try:
            q0 = keras.saving.load_model(path, safe_mode=True)
        except Exception as error:  # Keras raises many types for a bad file.
            raise ValueError(
                f"Saved warm-up model {path!r} is unreadable ({error}); delete it "
                "to make it again."
            ) from None
        set_mode(q0, "hard", activations=True)
        return q0
    if verbose:
        print(
            "Warm-up quantized model: "
            f"{config.warmup_reconstruction_steps} reconstruction steps per block"
        )
    q0 = warmup_quantized_model(model, images, quant_config, config, seed, verbose)
    if path is not None:
        # Keras picks the format from the suffix, so the temporary name
        # keeps `.keras`.
        temporary = path[: -len(".keras")] + ".partial.keras"
        q0.save(temporary)
        os.replace(temporary, path)
    return q0


def refine_batches(
    probe,
    q0,
    warmup_states,
    sizes,
    config,
    space,
    seeds,
    store=None,
    verbose="auto",
    callbacks=None,
):
    """Refine every batch in order; returns the refined images, concatenated.

    Args:
        probe: the `BatchNormProbe` of the float model, without swing shifts.
        q0: the warm-up quantized model.
        warmup_states: `warmup_states(index)` returns a batch's generator
            state (called only for batches not refined yet).
        sizes: images per batch.
        config: the `SynthesisConfig`.
        space: the `InputSpace` of the images.
        seeds: one seed per batch.
        store: optional `BatchStore` of refined batches.
        verbose: `fit` verbosity.
        callbacks: Keras callbacks for each batch's `fit`.

    Raises:
        FloatingPointError: if refinement produces non-finite images.
    """
    model = probe.model
    pair = HeadPair(probe, q0, blocks=config.match == "blocks")
    image_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    batches, earlier = [], []

    def make_trainer(size, seed):
        return RefinementTrainer(
            pair,
            config,
            size,
            space.mean,
            space.std,
            seed=seed,
            memory_size=sum(sizes[:-1]),
        )

    trainers = TrainerCache(make_trainer)
    for index, size in enumerate(sizes):
        images = store.load(index, (size, *image_shape)) if store else None
        if images is None:
            if verbose:
                print(f"SADAG refinement, batch {index + 1}/{len(sizes)}")
            memory = None
            if earlier:
                memory = tuple(
                    np.concatenate([e[k] for e in earlier])
                    for k in range(len(earlier[0]))
                )
            trainer = trainers.get(size, seeds[index])
            trainer.set_state(warmup_states(index))
            trainer.set_earlier(memory)
            trainer.run(
                config.refine_steps, f"refinement batch {index}", verbose, callbacks
            )
            images = trainer.images()
            if not np.all(np.isfinite(images)):
                raise FloatingPointError(
                    f"SADAG refinement of batch {index} produced non-finite images."
                )
            check = diagnostics.check_images(images, probe, space)
            diagnostics.warn_if_degenerate(check, model.name, index, space)
            if store:
                store.save(index, images)
        # Features from the saved images, so a resumed run sees the same ones.
        earlier.append(pair.features(images))
        batches.append(images)
    return np.concatenate(batches)
