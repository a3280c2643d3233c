"""The synthesis optimization as a Keras model: `fit` drives one batch of images."""

import math

import keras
import numpy as np
from keras import ops

from keras_sagdq import backend
from keras_sagdq.synthesis.generator import build_generator
from keras_sagdq.synthesis.losses import bn_statistics_loss
from keras_sagdq.synthesis.losses import input_prior_loss


class SynthesisTrainer(keras.Model):
    """Optimizes one batch of synthetic images against a `BatchNormProbe`.

    With a generator (GENIE-D), the trainable state is a fresh generator and
    its latents; without (ZeroQ), the standardized pixels themselves. The
    latents (or pixels) use Adam with reduce-on-plateau on the loss; the
    generator uses Adam with a staircase exponential decay.

    Not a model to call: `fit` runs `train_step` once per step (the data it
    is given is ignored); `images()` returns the current batch.

    Args:
        probe: the `BatchNormProbe` of the float model.
        config: a `SynthesisConfig`.
        batch_size: images in this batch.
        input_mean: per-channel mean of the model's input space.
        input_std: per-channel std of the model's input space.
        seed: seed of the generator, the latents or pixels.
        learn_mean: also learn the input space's mean (a per-channel shift
            of the images, Adam at `config.input_space_lr`).
        learn_std: also learn the input space's std (a per-channel log scale).
    """

    def __init__(
        self,
        probe,
        config,
        batch_size,
        input_mean,
        input_std,
        seed=0,
        learn_mean=False,
        learn_std=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._probe = probe
        self._config = config
        self._input_mean = ops.convert_to_tensor(input_mean, "float32")
        self._input_std = ops.convert_to_tensor(input_std, "float32")
        self._means = [ops.convert_to_tensor(m) for m in probe.means]
        self._stds = [ops.convert_to_tensor(s) for s in probe.stds]
        image_shape = tuple(probe.model.inputs[0].shape[1:])
        rng = np.random.default_rng(seed)
        if config.generator:
            self.generator = build_generator(
                image_shape,
                config.latent_dim,
                seed=seed,
                feature_channels=config.generator_channels,
            )
            self.codes = keras.Variable(
                rng.standard_normal((batch_size, config.latent_dim)).astype("float32"),
                name="latents",
            )
            self._groups = [[self.codes], list(self.generator.trainable_variables)]
            self._optimizers = self._generator_optimizers(config)
        else:
            self.generator = None
            self.codes = keras.Variable(
                rng.standard_normal((batch_size, *image_shape)).astype("float32"),
                name="pixels",
            )
            self._groups = [[self.codes]]
            self._optimizers = [keras.optimizers.Adam(config.latent_lr)]
        # images = mean + std * (shift + exp(log_scale) * standardized): the
        # generator's last BatchNorm pins its output to mean 0 / std 1, so
        # these two are the only way the image statistics can move.
        channels = image_shape[-1]
        self.input_shift = keras.Variable(
            np.zeros(channels, "float32"), name="input_shift"
        )
        self.input_log_scale = keras.Variable(
            np.zeros(channels, "float32"), name="input_log_scale"
        )
        learned = [
            v
            for v, on in (
                (self.input_shift, learn_mean),
                (self.input_log_scale, learn_std),
            )
            if on
        ]
        if learned:
            self._groups.append(learned)
            self._optimizers.append(keras.optimizers.Adam(config.input_space_lr))
        for optimizer, group in zip(self._optimizers, self._groups):
            optimizer.build(group)
        self._best = keras.Variable(np.inf, trainable=False, name="plateau_best")
        self._bad_steps = keras.Variable(0.0, trainable=False, name="plateau_bad_steps")
        self.compile(jit_compile=config.jit_compile)
        self.built = True

    def _per_batch_variables(self):
        """Variables a new batch starts afresh whatever its seed."""
        variables = [self.input_shift, self.input_log_scale, self._best]
        variables.append(self._bad_steps)
        for optimizer in self._optimizers:
            variables += optimizer.variables
        return variables

    def _snapshot(self):
        # Called by `reset` on first use, so a subclass's own variables
        # (made after this constructor returns) are included.
        # Arrays only: a Keras model would track variables kept in a list.
        if not hasattr(self, "_initial_values"):
            self._initial_values = tuple(
                ops.convert_to_numpy(v.value) for v in self._per_batch_variables()
            )

    def reset(self, seed):
        """Start another batch: the state a new trainer with `seed` would have.

        Reusing one trainer for every batch of a run keeps its traced step
        function: a new trainer per batch would trace (TensorFlow) and
        allocate again. Latents, generator weights, optimizer moments and
        rate schedules, the plateau counter, the input-space shift and the
        probe's swing offsets all restart, so the batch comes out as it
        would from a fresh trainer.

        Args:
            seed: the batch's seed (as `seed` of the constructor).

        Returns:
            `self`.
        """
        self._snapshot()
        for variable, value in zip(self._per_batch_variables(), self._initial_values):
            variable.assign(value)
        self._reseed(seed)
        return self

    def _reseed(self, seed):
        image_shape = tuple(self._probe.model.inputs[0].shape[1:])
        rng = np.random.default_rng(seed)
        self.codes.assign(rng.standard_normal(self.codes.shape).astype("float32"))
        if self.generator is not None:
            fresh = build_generator(
                image_shape,
                self._config.latent_dim,
                seed=seed,
                feature_channels=self._config.generator_channels,
            )
            self.generator.set_weights(fresh.get_weights())
        self._probe.reseed(seed)

    def _generator_optimizers(self, config):
        """Adam for the latents and for the generator, in that order."""
        decay = keras.optimizers.schedules.ExponentialDecay(
            config.generator_lr,
            config.generator_decay_steps,
            config.generator_decay,
            staircase=True,
        )
        return [keras.optimizers.Adam(config.latent_lr), keras.optimizers.Adam(decay)]

    def state(self):
        """The latents (or pixels) and generator weights, as named numpy arrays."""
        arrays = {"latents": ops.convert_to_numpy(self.codes.value)}
        if self.generator is not None:
            for i, weight in enumerate(self.generator.get_weights()):
                arrays[f"generator_{i:03d}"] = weight
        return arrays

    def set_state(self, arrays):
        """Restore what `state()` returned (e.g. to continue a finished batch).

        Raises:
            ValueError: if the arrays do not fit this trainer.
        """
        names = sorted(self.state())
        if sorted(arrays) != names:
            raise ValueError(
                f"Saved synthesis state has arrays {sorted(arrays)}, expected {names}."
            )
        self.codes.assign(arrays["latents"])
        if self.generator is not None:
            self.generator.set_weights(
                [arrays[n] for n in names if n.startswith("generator_")]
            )

    def _standardized(self):
        if self.generator is None:
            return self.codes.value
        return self.generator(self.codes.value, training=True)

    def _to_input_space(self, standardized):
        scaled = (
            self.input_shift.value + ops.exp(self.input_log_scale.value) * standardized
        )
        return scaled * self._input_std + self._input_mean

    def images(self):
        """The current batch in the model's input space, as numpy float32."""
        return ops.convert_to_numpy(self._to_input_space(self._standardized()))

    def run(self, steps, where, verbose="auto", callbacks=None):
        """`fit` for `steps` steps; stops with a `FloatingPointError` naming
        `where` if the loss stops being finite.

        Returns:
            The `History`.
        """
        self._snapshot()
        callbacks = [StopOnNonFinite(where)] + list(callbacks or [])
        return self.fit(
            np.zeros((steps, 1), np.float32),
            batch_size=1,
            epochs=1,
            shuffle=False,
            verbose=verbose,
            callbacks=callbacks,
        )

    def input_space(self):
        """`(mean, std)` of the images now, numpy float32 `(C,)` each."""
        mean = self._input_mean + self._input_std * self.input_shift.value
        std = self._input_std * ops.exp(self.input_log_scale.value)
        return ops.convert_to_numpy(mean), ops.convert_to_numpy(std)

    def _reduce_on_plateau(self, loss):
        # PyTorch's ReduceLROnPlateau rule: a relative improvement of 1e-4
        # resets the count; after `patience` steps without one, scale the rate.
        c = self._config
        improved = loss < self._best * (1.0 - 1e-4)
        self._best.assign(ops.where(improved, loss, self._best))
        bad_steps = ops.where(improved, 0.0, self._bad_steps + 1.0)
        reduce = bad_steps > c.plateau_patience
        rate = self._optimizers[0].learning_rate
        rate.assign(
            ops.where(
                reduce, ops.maximum(rate * c.plateau_factor, c.min_latent_lr), rate
            )
        )
        self._bad_steps.assign(ops.where(reduce, 0.0, bad_steps))

    def genie_loss(self, parts):
        """The batch's loss now: BatchNorm statistics (and the input prior).

        Args:
            parts: a dict that receives each term by name.

        Returns:
            The scalar loss.
        """
        standardized = self._standardized()
        images = self._to_input_space(standardized)
        _, bn_inputs = self._probe(images)
        parts["bn"] = bn_statistics_loss(
            bn_inputs, self._means, self._stds, per_sample=self._config.per_sample
        )
        loss = parts["bn"]
        if self._config.prior_weight:
            parts["prior"] = input_prior_loss(standardized)
            loss = loss + self._config.prior_weight * parts["prior"]
        return loss

    def train_step(self, data):
        parts = {}
        loss = backend.minimize_step(
            lambda: self.genie_loss(parts), self._optimizers, self._groups
        )
        self._reduce_on_plateau(loss)
        return {"loss": loss, **parts, "latent_lr": self._optimizers[0].learning_rate}


class TrainerCache:
    """One trainer per batch size for a whole run, `reset` for each batch.

    A run's batches share a size but the last, so this builds (and, on
    TensorFlow, traces) at most two trainers however many batches there are.

    Args:
        make: `make(size, seed)` returns a new trainer.

    Example:

    >>> from keras_sagdq.synthesis import BatchNormProbe, synthesis_config
    >>> probe, config = BatchNormProbe(model), synthesis_config(latent_dim=16)
    >>> cache = TrainerCache(lambda size, seed: SynthesisTrainer(
    ...     probe, config, size, input_mean=0.29, input_std=0.35, seed=seed))
    >>> first = cache.get(8, seed=7)  # built
    >>> cache.get(8, seed=8) is first  # the same trainer, reset
    True
    """

    def __init__(self, make):
        self._make = make
        self._trainers = {}

    def get(self, size, seed):
        """A trainer for a batch of `size` in the state a new one with `seed` has."""
        if size in self._trainers:
            return self._trainers[size].reset(seed)
        trainer = self._trainers[size] = self._make(size, seed)
        return trainer


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops synthesis with an error naming where and at which step the loss broke.

    Args:
        where: what is running, e.g. `"batch 3"`; the error reads
            "... at batch 3, step 17".
    """

    def __init__(self, where):
        super().__init__()
        self.where = where

    def on_train_batch_end(self, step, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"Synthesis loss became {loss} at {self.where}, step {step + 1}. "
                "Check the model's BatchNorm statistics for NaN/inf values, or lower "
                "`latent_lr` / `generator_lr`."
            )
