"""SADAG's refinement as a Keras model: `fit` continues one GENIE batch.

Each step moves the batch's generator and latents so that, besides matching
the BatchNorm statistics, the last-layer gradient of every sample under the
warm-up quantized model `q0` agrees with the gradient at a nearby sample
(gradient matching, a sharpness proxy) and differs from the gradients of
the other samples (gradient diversity).

Reference:
    - [Dung et al., 2024. Sharpness-Aware Data Generation for Zero-shot
      Quantization](https://arxiv.org/abs/2510.07018)
"""

import keras
import numpy as np
from keras import ops

from keras_sagdq import backend
from keras_sagdq.graph import tracing
from keras_sagdq.graph.blocks import find_blocks
from keras_sagdq.graph.head import find_classifier_head
from keras_sagdq.graph.head import pre_activation_logits
from keras_sagdq.layers import quantization_off
from keras_sagdq.synthesis.losses import bn_statistics_loss
from keras_sagdq.synthesis.losses import gradient_diversity_loss
from keras_sagdq.synthesis.losses import gradient_matching_loss
from keras_sagdq.synthesis.losses import input_prior_loss
from keras_sagdq.synthesis.losses import unit_rows
from keras_sagdq.synthesis.trainer import SynthesisTrainer


class HeadPair:
    """The float model and `q0` side by side, up to their classifier heads.

    Args:
        probe: `BatchNormProbe` of the float model (no swing shifts).
        qmodel: the warm-up quantized model `q0`, in the mode it is used
            in (hard rounding, activation quantizers on).
        blocks: also compute, per block of `q0` but the last, the
            per-sample gradient of the block's reconstruction loss with
            respect to a per-channel scale of its output (`match="blocks"`).

    Raises:
        ValueError: if either model's output is not a Dense layer.

    Example:

    >>> from keras_sagdq.synthesis import BatchNormProbe
    >>> pair = HeadPair(BatchNormProbe(model), qmodel)
    >>> bn_inputs, features, residuals = pair(images)
    """

    def __init__(self, probe, qmodel, blocks=False):
        self.probe = probe
        self.f_head = find_classifier_head(probe.graph, probe.model.name)
        self.q_graph = tracing.trace(qmodel)
        self.q_head = find_classifier_head(self.q_graph, qmodel.name)
        self.block_ids = []
        self._qmodel = qmodel
        if blocks:
            _, found = find_blocks(qmodel)
            self.block_ids = [block.output_id for block in found[:-1]]
        shape = tuple(probe.model.inputs[0].shape[1:])
        _, parts = self.parts(np.zeros((2, *shape), "float32"))
        # Widths of `h`, `r` (and the blocks' part), for buffers of each.
        self.widths = tuple(part.shape[-1] for part in parts)
        if len(parts[0].shape) != 2:
            raise ValueError(
                f"The last Dense layer {self.f_head.layer.name!r} of model "
                f"{probe.model.name!r} has a rank-{len(parts[0].shape)} input; "
                "SADAG needs a flat (batch, features) input there. Add a Flatten "
                "or a pooling layer before it."
            )

    def __call__(self, images):
        """`(BatchNorm inputs, h, r)` for `images`.

        `h` is the input of `q0`'s last Dense as `q0` computes it, `r` the
        pre-activation logits of the float model minus those of `q0`.
        """
        bn_inputs, parts = self.parts(images, blocks=False)
        return bn_inputs, parts[0], parts[1]

    def parts(self, images, blocks=True):
        """`(BatchNorm inputs, [h, r])`, or `[h, r, b]` with blocks.

        `b` concatenates, per block, `mean_p y_q * (y_q - y_f)` over the
        positions `p` of the block's output (the gradient of
        `0.5 * ||s * y_q - y_f||^2` with respect to a per-channel scale `s`
        at 1, up to the positions' count), scaled to unit norm per block;
        `y_q` is the block's output in `q0`, `y_f` in `q0` run in float
        mode (the float model with BatchNorm folded). `blocks=False` leaves
        `b` out.
        """
        block_ids = self.block_ids if blocks else []
        _, bn_inputs, (f_features,) = self.probe.run(images, [self.f_head.input_ids[0]])
        _, q_taps = tracing.tap(
            self.q_graph, images, [self.q_head.input_ids[0], *block_ids]
        )
        q_features = q_taps[0]
        residuals = pre_activation_logits(
            self.f_head.layer, f_features
        ) - pre_activation_logits(self.q_head.layer, q_features)
        if not block_ids:
            return bn_inputs, [q_features, residuals]
        # Modes are Python state read when a layer is called, so this holds
        # inside a traced step too.
        with quantization_off(self._qmodel):
            _, f_taps = tracing.tap(self.q_graph, images, block_ids)
        parts = []
        for y_q, y_f in zip(q_taps[1:], f_taps):
            channels = y_q.shape[-1]
            y_q = ops.reshape(y_q, (ops.shape(y_q)[0], -1, channels))
            y_f = ops.reshape(y_f, (ops.shape(y_f)[0], -1, channels))
            parts.append(unit_rows(ops.mean(y_q * (y_q - y_f), axis=1)))
        return bn_inputs, [q_features, residuals, ops.concatenate(parts, axis=-1)]

    def features(self, images, batch_size=256):
        """`(h, r)` (and `b` with blocks) of `images` as numpy arrays.

        For the diversity memory.
        """
        parts = [
            self.parts(images[i : i + batch_size])[1]
            for i in range(0, len(images), batch_size)
        ]
        return tuple(
            np.concatenate([ops.convert_to_numpy(p[k]) for p in parts])
            for k in range(len(parts[0]))
        )


class RefinementTrainer(SynthesisTrainer):
    """Refines one batch: `L_BN + prior + gm_weight * L_GM + div_weight * L_div`.

    Starts from a fresh generator; `set_state` loads the batch's warm-up
    generator and latents (`SynthesisTrainer.state()` of its GENIE run).
    Latents and generator use Adam at the constant rates
    `refine_latent_lr` and `refine_generator_lr`. Neighbors are
    `z' = z + rho * u / ||u||` per sample, with `u` the gradient of the
    summed logit disagreement `0.5 * sum ||f(x) - q0(x)||^2` with respect to
    all latents (`neighbor="sam"`; the generator's batch-statistics
    BatchNorm couples the samples, so a per-sample gradient does not exist),
    or a random direction (`neighbor="random"`). BatchNorm statistics are
    matched on the samples only, without swing shifts.

    `fit` logs `loss`, `bn`, `prior`, `gm`, `div` and `cosine`, the mean
    cosine between the gradients of samples and neighbors.

    Args:
        pair: the `HeadPair` of the float model and `q0`.
        config: a `SynthesisConfig`.
        batch_size: images in this batch.
        input_mean: per-channel mean of the model's input space.
        input_std: per-channel std of the model's input space.
        earlier: optional `(h, r)` numpy arrays of earlier batches' samples,
            the constant part of the diversity loss.
        seed: seed of the fresh generator and of random neighbors.
        memory_size: how many earlier samples `set_earlier` may hold later
            (at least `len(earlier[0])`), so that one trainer can refine
            every batch of a run.

    Example:

    >>> from keras_sagdq.synthesis import BatchNormProbe, synthesis_config
    >>> pair = HeadPair(BatchNormProbe(model), qmodel)
    >>> config = synthesis_config("sadag", refine_steps=2)
    >>> trainer = RefinementTrainer(pair, config, 8, input_mean=0.29, input_std=0.35)
    >>> history = trainer.run(config.refine_steps, "batch 0", verbose=0)
    >>> trainer.images().shape
    (8, 28, 28, 1)
    """

    def __init__(
        self,
        pair,
        config,
        batch_size,
        input_mean,
        input_std,
        earlier=None,
        seed=0,
        memory_size=0,
        **kwargs,
    ):
        if not config.generator:
            raise ValueError(
                "SADAG refines a generator and its latents; the config has "
                f"generator={config.generator!r}."
            )
        super().__init__(
            pair.probe, config, batch_size, input_mean, input_std, seed=seed, **kwargs
        )
        self._pair = pair
        # Earlier samples live in zero-padded variables of a fixed size, so
        # the traced step serves every batch: a zero row has similarity 0
        # with everything, and `delta >= 0` makes its diversity term 0.
        count = 0 if earlier is None else len(earlier[0])
        size = max(memory_size, count)
        self._earlier = None
        if size:
            shapes = [(size, int(width)) for width in pair.widths]
            self._earlier = tuple(
                keras.Variable(np.zeros(shape, "float32"), trainable=False, name=name)
                for shape, name in zip(shapes, ("earlier_h", "earlier_r", "earlier_b"))
            )
        self.set_earlier(earlier)
        self._direction = keras.Variable(
            np.zeros((batch_size, config.latent_dim), "float32"),
            trainable=False,
            name="neighbor_direction",
        )
        self._step = keras.Variable(0, dtype="int32", trainable=False, name="step")
        self._neighbor_seed = keras.random.SeedGenerator(seed + 1)

    def _generator_optimizers(self, config):
        return [
            keras.optimizers.Adam(config.refine_latent_lr),
            keras.optimizers.Adam(config.refine_generator_lr),
        ]

    def set_earlier(self, earlier):
        """Set the earlier batches' `(h, r)` for the diversity loss.

        Args:
            earlier: `(h, r)` numpy arrays, or None for none.

        Raises:
            ValueError: if there are more samples than `memory_size`.
        """
        count = 0 if earlier is None else len(earlier[0])
        capacity = 0 if self._earlier is None else self._earlier[0].shape[0]
        if count > capacity:
            raise ValueError(
                f"{count} earlier samples do not fit a memory of {capacity}; "
                "pass a larger `memory_size`."
            )
        for k, variable in enumerate(self._earlier or ()):
            padded = np.zeros(variable.shape, "float32")
            if count:
                padded[:count] = earlier[k]
            variable.assign(padded)

    def _per_batch_variables(self):
        return super()._per_batch_variables() + [self._direction, self._step]

    def _reseed(self, seed):
        super()._reseed(seed)
        self.set_earlier(None)
        state = self._neighbor_seed.state
        state.assign(ops.convert_to_tensor([seed + 1, 0], dtype=state.dtype))

    def _images_of(self, codes):
        return self._to_input_space(self.generator(codes, training=True))

    def _disagreement_direction(self):
        def disagreement():
            _, _, residuals = self._pair(self._images_of(self.codes.value))
            return 0.5 * ops.sum(ops.square(residuals))

        _, (gradient,) = backend.value_and_grad(disagreement, [self.codes])
        return ops.stop_gradient(gradient)

    def _direction_now(self):
        c = self._config
        if c.neighbor == "random":
            return keras.random.normal(
                ops.shape(self.codes.value), seed=self._neighbor_seed
            )
        if c.neighbor_every == 1:
            return self._disagreement_direction()
        direction = ops.cond(
            ops.equal(self._step % c.neighbor_every, 0),
            self._disagreement_direction,
            lambda: self._direction.value,
        )
        self._direction.assign(direction)
        return direction

    def train_step(self, data):
        c = self._config
        direction = self._direction_now()
        # A zero gradient row leaves that sample its own neighbor.
        norm = ops.sqrt(ops.sum(ops.square(direction), axis=-1, keepdims=True))
        offset = c.rho * direction / ops.maximum(norm, 1e-12)
        size = self.codes.shape[0]
        parts = {}

        def loss_fn():
            codes = self.codes.value
            standardized = self.generator(codes, training=True)
            images = self._to_input_space(standardized)
            neighbors = self._images_of(codes + offset)
            bn_inputs, g = self._pair.parts(ops.concatenate([images, neighbors], 0))
            parts["bn"] = bn_statistics_loss(
                [a[:size] for a in bn_inputs], self._means, self._stds
            )
            parts["prior"] = input_prior_loss(standardized)
            count = len(self._pair.block_ids)
            b = g[2] if count else None
            parts["gm"] = gradient_matching_loss(
                g[0][:size],
                g[1][:size],
                g[0][size:],
                g[1][size:],
                blocks=None if b is None else b[:size],
                neighbor_blocks=None if b is None else b[size:],
                block_count=count,
            )
            earlier = (None, None, None)
            if self._earlier is not None:
                earlier = tuple(v.value for v in self._earlier) + (None,)
            parts["div"] = gradient_diversity_loss(
                g[0][:size],
                g[1][:size],
                earlier[0],
                earlier[1],
                delta=c.delta,
                blocks=None if b is None else b[:size],
                earlier_blocks=earlier[2],
                block_count=count,
            )
            return (
                parts["bn"]
                + c.prior_weight * parts["prior"]
                + c.gm_weight * parts["gm"]
                + c.div_weight * parts["div"]
            )

        loss = backend.minimize_step(loss_fn, self._optimizers, self._groups)
        self._step.assign(self._step + 1)
        parts = {k: ops.stop_gradient(v) for k, v in parts.items()}
        return {
            "loss": loss,
            **parts,
            "cosine": 1.0 - parts["gm"],
        }
