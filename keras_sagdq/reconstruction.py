"""GENIE-M block reconstruction: learn step sizes and rounding, one block at a time.

For each block (`graph.blocks.find_blocks`), in order:

1. run the float block on the float stream to get the target `y_fp`;
2. train the block's weight steps, rounding logits and activation steps to
   minimize `||block_q(x) - y_fp||^2 + lambda * sum(1 - |2h(V) - 1|^beta)`,
   where `x` mixes the float and the quantized streams element by element
   (QDrop) and activation quantizers inside the block drop to float with
   probability 0.5; `beta` anneals from 20 to 2 after a 20% warm-up without
   the rounding term;
3. harden the rounding (`V >= 0`) and run the quantized block on the
   quantized stream to feed the next block.

Each block is trained by `keras.Model.fit` on a small model with a custom
`train_step`, so `verbose`, callbacks and progress bars work as usual. Only
the current block's inputs and outputs are held in memory.

Reference:
    - [Li et al., 2021. BRECQ](https://arxiv.org/abs/2102.05426)
    - [Wei et al., 2022. QDrop](https://arxiv.org/abs/2203.05740)
    - [Jeon et al., 2023. GENIE](https://arxiv.org/abs/2212.04780)
"""

import dataclasses
import hashlib
import json
import os

import keras
import numpy as np
from keras import ops

from keras_sagdq import backend
from keras_sagdq.calibration import calibrate_activations
from keras_sagdq.config import resolve_config
from keras_sagdq.graph.blocks import find_blocks
from keras_sagdq.input_range import input_quantizer
from keras_sagdq.integer_alignment import align_biases
from keras_sagdq.layers import activation_quantizers
from keras_sagdq.layers import quantization_off
from keras_sagdq.layers import reset_compiled_functions
from keras_sagdq.layers import set_layer_modes
from keras_sagdq.layers import set_mode
from keras_sagdq.layers import share_grids
from keras_sagdq.synthesis.storage import BatchStore

_SETTINGS_FILE = "reconstruction.json"
_PROGRESS_FILE = "progress.json"
# Keras picks the weights format from the suffix.
_WEIGHTS_FILE = "finished_blocks.weights.h5"


@dataclasses.dataclass
class ReconstructionConfig:
    """Hyperparameters of block reconstruction (per block).

    Args:
        steps: optimization steps per block.
        batch_size: images per step (an odd batch, or fewer images than
            `batch_size` of an odd count, is rounded down to an even one).
        weight_step_lr: Adam rate of the weight steps.
        activation_step_lr: initial Adam rate of the activation steps
            (cosine decay to 0 over `steps`).
        rounding_lr: Adam rate of the rounding logits.
        rounding_weight: `lambda` of the rounding regularizer.
        beta_start: `beta` when the rounding term switches on.
        beta_end: `beta` at the last step.
        warmup: fraction of steps before the rounding term switches on.
        input_mix: probability that a block input element is taken from the
            float stream instead of the quantized stream.
        qdrop_probability: probability that an activation quantizer inside
            the block keeps an element float.

    Example:

    >>> config = ReconstructionConfig(steps=500, batch_size=16)
    >>> config.steps, config.qdrop_probability
    (500, 0.5)
    """

    steps: int = 20000
    batch_size: int = 32
    weight_step_lr: float = 1e-4
    activation_step_lr: float = 4e-5
    rounding_lr: float = 1e-3
    rounding_weight: float = 1.0
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2
    input_mix: float = 0.5
    qdrop_probability: float = 0.5

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive integer. Received: {name}={value!r}"
                )
        for name in ("warmup", "input_mix", "qdrop_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"`{name}` must be in [0, 1]. Received: {name}={value!r}"
                )


PROFILES = {
    "paper": ReconstructionConfig(),
    # Chosen by measurement on the Fashion-MNIST reference models (docs/benchmarks.md).
    "fast": ReconstructionConfig(steps=1000),
}


def reconstruction_config(profile="fast", **overrides):
    """The `ReconstructionConfig` of a profile, with keyword overrides.

    Raises:
        ValueError: if `profile` is unknown or an override is not a field.

    Example:

    >>> reconstruction_config("fast", steps=500).steps
    500
    """
    return resolve_config(None, profile, PROFILES, overrides)


def reconstruct(
    qmodel,
    fp_model,
    images,
    config=None,
    profile=None,
    seed=0,
    verbose="auto",
    callbacks=None,
    directory=None,
    **overrides,
):
    """Calibrate `qmodel` in place by block reconstruction on `images`.

    With `directory`, the model's weights are saved there after every
    block; a rerun with the same arguments loads them and trains only the
    blocks not finished yet, and ends with the same model as an
    uninterrupted run.

    Args:
        qmodel: a model from `keras_sagdq.quantize_model` (modified in place).
        fp_model: the float model `qmodel` was made from; used to check that
            `qmodel` is its twin.
        images: numpy calibration images `(N, H, W, C)`, real or synthetic,
            in the model's input space.
        config: a `ReconstructionConfig`; default: the `profile` preset.
        profile: preset name when no `config` is given: `"fast"` (the
            default, 1000 steps per block) or `"paper"` (20 000).
        seed: seed of batch sampling and the QDrop masks.
        verbose: `fit` verbosity (0, 1, 2 or "auto").
        callbacks: Keras callbacks passed to each block's `fit`.
        directory: optional path where progress is saved after each block
            and resumed from.
        **overrides: fields of the config to replace, e.g. `steps=500`.

    Returns:
        A list with one `keras.callbacks.History` per block trained by this
        call (blocks finished by an earlier call are loaded, not trained).

    Raises:
        TypeError: if `config` is not a `ReconstructionConfig`.
        ValueError: on an unknown profile or field, both `config` and
            `profile`, empty or non-finite
            images, a `qmodel` whose float twin does not match `fp_model`,
            or a `directory` holding progress made with other settings.

    Example:

    >>> qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4))
    >>> histories = ks.reconstruct(qmodel, model, calibration_images, verbose=0)
    >>> top1 = (qmodel.predict(x_test, verbose=0).argmax(-1) == y_test).mean()
    """
    config = resolve_config(config, profile, PROFILES, overrides)
    images = np.asarray(images, np.float32)
    if images.ndim < 2 or len(images) == 0 or not np.all(np.isfinite(images)):
        raise ValueError(
            "`images` must be a non-empty array of finite values. "
            f"Received: images with shape {images.shape}"
        )
    if not all(q.initialized for q in activation_quantizers(qmodel)):
        calibrate_activations(qmodel, images)
    _check_twin(qmodel, fp_model, images[:8])
    _seed_qdrop(qmodel, seed)
    _, blocks = find_blocks(qmodel)
    progress = None
    if directory is not None:
        progress = _Progress(directory, qmodel, fp_model, images, config, seed)
    finished = progress.load(qmodel) if progress else 0
    if verbose and finished:
        print(f"Resuming: {finished}/{len(blocks)} blocks loaded from {directory!r}")
    fp_stream, q_stream = images, images
    histories = []
    for index, block in enumerate(blocks):
        _set_block_mode(block, "float", qdrop=0.0)
        target = run_block(block, fp_stream, config.batch_size * 8)
        if index >= finished:
            if verbose:
                print(f"Block {index + 1}/{len(blocks)}: {block.name}")
            histories.append(
                _train_block(
                    block,
                    fp_stream,
                    q_stream,
                    target,
                    config,
                    seed + index,
                    verbose,
                    callbacks,
                )
            )
        _set_block_mode(block, "hard", qdrop=0.0)
        # An average pooling's rounding follows its input grid's new step.
        share_grids(qmodel)
        if progress and index >= finished:
            progress.save(qmodel, index + 1)
        q_stream = run_block(block, q_stream, config.batch_size * 8)
        fp_stream = target
    set_mode(qmodel, "hard")
    if input_quantizer(qmodel) is not None:  # built for an integer runtime
        align_biases(qmodel)
        reset_compiled_functions(qmodel)
    return histories


def _train_block(block, fp_inputs, q_inputs, target, config, seed, verbose, callbacks):
    _set_block_mode(block, "soft", qdrop=config.qdrop_probability)
    trainer = BlockTrainer(block, config, seed=seed)
    return trainer.run(fp_inputs, q_inputs, target, seed, verbose, callbacks)


class _Progress:
    """The weights after each finished block, saved in a directory.

    The settings (config, seed, a hash of the images and of the float
    model's weights, the quantized layers and their bits) must match the
    stored ones, so progress made for other inputs is never loaded.
    """

    def __init__(self, directory, qmodel, fp_model, images, config, seed):
        settings = dict(
            config=dataclasses.asdict(config),
            seed=seed,
            images=_digest([images]),
            fp_model=_digest(fp_model.get_weights()),
            layers=[
                [
                    layer.name,
                    type(layer).__name__,
                    getattr(layer, "weight_bits", None),
                    getattr(layer, "bits", None),
                ]
                for layer in qmodel.layers
            ],
        )
        self.store = BatchStore(directory, settings, settings_file=_SETTINGS_FILE)
        self.weights_path = os.path.join(directory, _WEIGHTS_FILE)

    def load(self, qmodel):
        """Load the saved weights into `qmodel`; returns the finished block count."""
        progress = self.store.load_json(_PROGRESS_FILE)
        if not progress or not os.path.exists(self.weights_path):
            return 0
        try:
            qmodel.load_weights(self.weights_path)
        except Exception as error:  # h5py and Keras raise many types.
            raise ValueError(
                f"Saved reconstruction weights {self.weights_path!r} are unreadable "
                f"({error}); delete them to start the reconstruction over."
            ) from None
        return int(progress["finished_blocks"])

    def save(self, qmodel, finished_blocks):
        temporary = self.weights_path.replace(".weights.h5", ".partial.weights.h5")
        qmodel.save_weights(temporary)
        os.replace(temporary, self.weights_path)
        self.store.save_json(_PROGRESS_FILE, {"finished_blocks": finished_blocks})


def _digest(arrays):
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(json.dumps([list(array.shape), str(array.dtype)]).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


# The smallest a learned weight step may get, relative to its value when the
# block's reconstruction starts.
_STEP_FLOOR = 0.01


class BlockTrainer(keras.Model):
    """Trains one block's quantizer parameters with three Adam optimizers.

    Not a model to call: `run` holds the block's calibration data and
    runs `fit` on the indices of one random batch per step.
    """

    def __init__(self, block, config, seed=0, **kwargs):
        super().__init__(**kwargs)
        self._block = block
        self._config = config
        self._weight_layers = block.weight_layers
        self._groups = learned_variables(block)
        schedule = keras.optimizers.schedules.CosineDecay(
            config.activation_step_lr, config.steps
        )
        self._optimizers = [
            keras.optimizers.Adam(config.weight_step_lr),
            keras.optimizers.Adam(schedule),
            keras.optimizers.Adam(config.rounding_lr),
        ]
        for optimizer, group in zip(self._optimizers, self._groups):
            if group:
                optimizer.build(group)
        # Adam moves a step by about its rate per update whatever the step's
        # size, so a channel of tiny weights could see its step cross zero
        # and its weights change sign. Each step keeps at least a fraction
        # of its starting value.
        self._step_floors = [
            keras.Variable(
                _STEP_FLOOR * ops.abs(step.value), trainable=False, name="step_floor"
            )
            for step in self._groups[0]
        ]
        self._iteration = keras.Variable(0.0, trainable=False, name="iteration")
        self._seed_generator = keras.random.SeedGenerator(seed)
        self.compile(jit_compile=False)
        self.built = True

    def run(self, fp_inputs, q_inputs, target, seed=0, verbose="auto", callbacks=None):
        """`config.steps` steps on random batches of the block's data.

        The data stay in (non-trainable) variables and `fit` reads only
        the indices of each step's batch: no per-step Python data pipeline,
        and nothing left in TensorFlow's dataset registry after `fit` (a
        generator-backed dataset per block kept ~18 MB per `reconstruct`
        call of a small model alive).

        Args:
            fp_inputs: the block's inputs from the float model, numpy.
            q_inputs: its inputs from the quantized model so far.
            target: the block's float outputs.
            seed: seed of the batches (drawn without replacement within a
                batch, independently across steps).
            verbose: `fit` verbosity.
            callbacks: Keras callbacks for `fit`.

        Returns:
            The `History`.
        """
        self._streams = [
            keras.Variable(np.asarray(a, np.float32), trainable=False, name=name)
            for a, name in zip(
                (fp_inputs, q_inputs, target), ("fp_inputs", "q_inputs", "target")
            )
        ]
        indices = batch_indices(len(fp_inputs), self._config, seed)
        try:
            # The batches are already random and seeded; `fit` would also
            # shuffle their order from the global random state.
            with backend.random_streams():
                return self.fit(
                    indices,
                    batch_size=1,
                    epochs=1,
                    shuffle=False,
                    verbose=verbose,
                    callbacks=callbacks,
                )
        finally:
            self._streams = None

    def _beta_and_weight(self):
        c = self._config
        warmup_steps = c.warmup * c.steps
        progress = (self._iteration - warmup_steps) / max(c.steps - warmup_steps, 1.0)
        progress = ops.clip(progress, 0.0, 1.0)
        beta = c.beta_end + (c.beta_start - c.beta_end) * (1.0 - progress)
        weight = ops.where(self._iteration >= warmup_steps, c.rounding_weight, 0.0)
        return beta, weight

    def train_step(self, data):
        indices, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        indices = ops.reshape(indices, (-1,))
        fp_inputs, q_inputs, target = (
            ops.take(v.value, indices, axis=0) for v in self._streams
        )
        use_float = backend.uniform_like(fp_inputs, self._seed_generator)
        inputs = ops.where(use_float < self._config.input_mix, fp_inputs, q_inputs)
        beta, weight = self._beta_and_weight()
        parts = {}

        def loss_fn():
            outputs = self._block(inputs, training=True)
            # Squared error summed over channels, averaged over the rest.
            parts["reconstruction"] = ops.mean(
                ops.sum(ops.square(outputs - target), axis=-1)
            )
            rounding = sum(layer.rounding_loss(beta) for layer in self._weight_layers)
            parts["rounding"] = weight * rounding
            return parts["reconstruction"] + parts["rounding"]

        loss = backend.minimize_step(loss_fn, self._optimizers, self._groups)
        for step, floor in zip(self._groups[0], self._step_floors):
            step.assign(ops.maximum(step.value, floor.value))
        self._iteration.assign_add(1.0)
        return {"loss": loss, **parts, "beta": beta}


def batch_indices(count, config, seed):
    """`(config.steps, batch)` int32 indices of random batches of `count` samples.

    Each batch is drawn without replacement (with replacement only for a
    single image), independently across steps. `batch` is
    `config.batch_size`, or `count` if that is smaller, rounded down to an
    even number of at least 2: oneDNN's filter gradient of a strided 1x1
    convolution (ResNet shortcuts) aborts or corrupts the heap for odd
    batches on this project's CPUs, under TensorFlow and PyTorch alike.
    """
    rng = np.random.default_rng(seed)
    batch = max(2, min(config.batch_size, count) // 2 * 2)
    return np.stack(
        [rng.choice(count, batch, replace=batch > count) for _ in range(config.steps)]
    ).astype("int32")


def _seed_qdrop(qmodel, seed):
    # Quantizers made without a seed draw their QDrop masks from the global
    # random state; restarting each one from `seed` makes a reconstruction
    # depend on `seed` alone.
    for index, quantizer in enumerate(activation_quantizers(qmodel)):
        state = quantizer.seed_generator.state
        state.assign(ops.convert_to_tensor([seed * 1009 + index, 0], dtype=state.dtype))


def _set_block_mode(block, mode, qdrop):
    set_layer_modes(block.layers, mode)
    for quantizer in block.activation_quantizers:
        quantizer.qdrop_probability = qdrop


def learned_variables(block):
    """What reconstruction learns in `block`, as three lists of variables.

    `[weight steps, trainable activation steps, rounding logits]`.
    """
    return [
        [layer.weight_step for layer in block.weight_layers],
        [q.step for q in block.activation_quantizers if q.trainable],
        [layer.rounding_logits for layer in block.weight_layers],
    ]


def run_block(block, inputs, batch_size):
    """`block` on numpy `inputs`, `batch_size` at a time; numpy outputs."""
    outputs = []
    for start in range(0, len(inputs), batch_size):
        y = block(ops.convert_to_tensor(inputs[start : start + batch_size]))
        outputs.append(ops.convert_to_numpy(y))
    return np.concatenate(outputs)


def _check_twin(qmodel, fp_model, images):
    with quantization_off(qmodel):
        twin = ops.convert_to_numpy(qmodel(images))
    reference = ops.convert_to_numpy(fp_model(images))
    # Relative to the outputs' scale: a leading Rescaling's offset is rounded
    # to the file's units (`align_biases`), a shift that extreme inputs
    # (a few synthesis steps) amplify; another model differs by far more.
    scale = max(1.0, float(np.abs(reference).max())) if reference.size else 1.0
    if twin.shape != reference.shape or not np.allclose(
        twin, reference, atol=1e-3 * scale, rtol=1e-3
    ):
        raise ValueError(
            "`qmodel` with quantization off does not reproduce `fp_model`; pass the "
            "model that `quantize_model` was called on. Received: fp_model "
            f"{fp_model.name!r}"
        )
