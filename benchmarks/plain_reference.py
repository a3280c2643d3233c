"""The library's steps beside the same steps written in plain framework code.

    KERAS_BACKEND=tensorflow python benchmarks/plain_reference.py
    KERAS_BACKEND=torch python benchmarks/plain_reference.py
    KERAS_BACKEND=torch python benchmarks/plain_reference.py --step=reconstruction

The yardstick for the Keras layer's overhead (issue 15): one GENIE synthesis
step on a reference model, once through `SynthesisTrainer` (Keras `fit`, the
gradient seam, Keras Adam) and once written directly in the active backend's
framework: PyTorch (`torch.nn.functional`, NCHW or channels-last,
`torch.optim.Adam`) or TensorFlow (`tf.nn` in NHWC inside one `tf.function`,
Adam written out). Both start from the same latents and generator weights,
and the first step's losses are compared, so the two compute the same thing:
generator -> images -> frozen classifier in inference mode -> BatchNorm
statistics loss + input prior -> gradients -> Adam on latents and generator.
Left out of both: swing shifts (`BatchNormProbe(swing=False)`); the library
still runs its reduce-on-plateau bookkeeping (a few scalar ops).

`--step=reconstruction` does the same for one block-reconstruction step
(`BlockTrainer` against `plain_blocks.py`) on block `--block` of the W4A4
model with `--images` images of block data; its loss check is one
full-batch step without QDrop, where nothing random is left.

Timing alternates the contenders in rounds and reports the median seconds
per step, so a load change hits all of them. The FLOPs are those of the
convolutions and matrix products of one step (forward and backward),
counted by `torch.utils.flop_counter` on the PyTorch step; the machine's
peak is measured as the sustained rate of a large float32 matrix product
in the same framework. Rows are merged into
`benchmarks/results_plain_reference.json`.
"""

import functools
import json
import os
import platform
import time

import keras
import numpy as np
from absl import app
from absl import flags
from plain_blocks import TensorFlowBlockStep
from plain_blocks import TorchBlockStep
from plain_blocks import same_padding
from plain_blocks import tf_adam_update
from provenance import git_commit
from provenance import save_row

import keras_sagdq as ks
from keras_sagdq import private_api
from keras_sagdq.graph.blocks import find_blocks
from keras_sagdq.models import load_reference_model
from keras_sagdq.reconstruction import BlockTrainer
from keras_sagdq.reconstruction import _set_block_mode
from keras_sagdq.reconstruction import reconstruction_config
from keras_sagdq.synthesis import BatchNormProbe
from keras_sagdq.synthesis import synthesis_config
from keras_sagdq.synthesis.trainer import SynthesisTrainer

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MODEL = flags.DEFINE_string("model", "resnet20_fashion_mnist", "Reference model.")
_STEP = flags.DEFINE_enum("step", "genie", ["genie", "reconstruction"], "Which step.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Images per step (default 128 for genie, 32 otherwise)."
)
_BLOCK = flags.DEFINE_integer("block", 4, "Reconstruction: the block's index.")
_IMAGES = flags.DEFINE_integer("images", 256, "Reconstruction: the block's data.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per round and contender.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Rounds of alternating timing.")
_RESULTS = flags.DEFINE_string(
    "results",
    os.path.join(_ROOT, "benchmarks", "results_plain_reference.json"),
    "JSON results file.",
)
_SPACE = (0.286, 0.353)


def _classifier_ops(model):
    """`[(layer, input layer names, output name)]` of a Functional model, in order."""
    steps = []
    for node in private_api.functional_nodes(model):
        layer = node.operation
        if isinstance(layer, keras.layers.InputLayer):
            continue
        sources = [private_api.producing_layer(t).name for t in node.input_tensors]
        steps.append((layer, sources))
    return steps


def _check_supported(layer):
    kinds = (
        keras.layers.Rescaling,
        keras.layers.Conv2D,
        keras.layers.DepthwiseConv2D,
        keras.layers.BatchNormalization,
        keras.layers.ReLU,
        keras.layers.Add,
        keras.layers.GlobalAveragePooling2D,
        keras.layers.Dense,
    )
    if not isinstance(layer, kinds):
        raise ValueError(f"No plain translation for layer {layer.name!r}.")
    activation = getattr(layer, "activation", None)
    if activation is not None and activation.__name__ != "linear":
        raise ValueError(f"No plain translation for the activation of {layer.name!r}.")


class TorchStep:
    """One GENIE step in plain PyTorch (NCHW, or channels-last memory)."""

    def __init__(
        self, model, generator, state, batch_size, config, channels_last, compiled=False
    ):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        self.steps = _classifier_ops(model)
        self.consts = {}
        for layer, _ in self.steps:
            _check_supported(layer)
            self.consts[layer.name] = [
                torch.tensor(np.asarray(w)) for w in layer.get_weights()
            ]
        self.bn_targets = {
            layer.name: (w[2], torch.sqrt(w[3] + layer.epsilon))
            for layer, _ in self.steps
            if isinstance(layer, keras.layers.BatchNormalization)
            for w in [self.consts[layer.name]]
        }
        for layer, _ in self.steps:
            weights = self.consts[layer.name]
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                k = weights[0]  # (kh, kw, cin, mult)
                weights[0] = k.permute(2, 3, 0, 1).reshape(-1, 1, *k.shape[:2])
            elif isinstance(layer, keras.layers.Conv2D):
                weights[0] = weights[0].permute(3, 2, 0, 1)
            if isinstance(layer, keras.layers.Conv2D) and len(weights[0].shape) == 4:
                weights[0] = weights[0].contiguous(memory_format=self.format)
        self.shape = tuple(model.inputs[0].shape[1:])
        self.latents = torch.tensor(state["latents"], requires_grad=True)
        params = [
            torch.tensor(state[n]) for n in sorted(state) if n.startswith("generator_")
        ]
        # Keras order per layer: kernel, bias | gamma, beta, mean, var.
        self.gen = []
        for layer in generator.layers:
            count = len(layer.weights)
            weights, params = params[:count], params[count:]
            if isinstance(layer, keras.layers.Conv2D):
                weights[0] = (
                    weights[0].permute(3, 2, 0, 1).contiguous(memory_format=self.format)
                )
            for w in weights[: len(layer.trainable_weights)]:
                w.requires_grad_(True)
            self.gen.append((layer, weights))
        trainable = [w for _, ws in self.gen for w in ws if w.requires_grad]
        self.optimizers = [
            torch.optim.Adam([self.latents], lr=config.latent_lr),
            torch.optim.Adam(trainable, lr=config.generator_lr),
        ]
        self.mean, self.std = _SPACE
        self.loss_fn = torch.compile(self.loss) if compiled else self.loss

    def _bn(self, x, weights, epsilon, training):
        F = self.F
        if len(weights) == 4:
            gamma, beta, mean, var = weights
        else:  # center=False, scale=False
            gamma = beta = None
            mean, var = weights
        return F.batch_norm(
            x, mean, var, gamma, beta, training=training, momentum=0.01, eps=epsilon
        )

    def _generate(self):
        torch, F = self.torch, self.F
        x = self.latents
        for layer, w in self.gen:
            if isinstance(layer, keras.layers.Dense):
                x = x @ w[0] + w[1]
            elif isinstance(layer, keras.layers.Reshape):
                h, wd, c = layer.target_shape
                x = x.reshape(-1, h, wd, c).permute(0, 3, 1, 2)
                x = x.contiguous(memory_format=self.format)
            elif isinstance(layer, keras.layers.BatchNormalization):
                x = self._bn(x, w, layer.epsilon, training=True)
            elif isinstance(layer, keras.layers.UpSampling2D):
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            elif isinstance(layer, keras.layers.Conv2D):
                x = F.conv2d(x, w[0], w[1], padding=1)
            elif isinstance(layer, keras.layers.LeakyReLU):
                x = F.leaky_relu(x, 0.2)
            elif isinstance(layer, keras.layers.Cropping2D):
                (top, bottom), (left, right) = layer.cropping
                x = x[:, :, top : x.shape[2] - bottom, left : x.shape[3] - right]
            elif isinstance(layer, keras.layers.Activation):
                x = torch.tanh(x)
        return x

    def classify(self, images):
        """Logits and BatchNorm inputs of the frozen classifier (NCHW images)."""
        F = self.F
        values, bn_inputs = {"": images}, []
        x = images
        for layer, sources in self.steps:
            w = self.consts[layer.name]
            args = [values.get(s, images) for s in sources]
            x = args[0]
            if isinstance(layer, keras.layers.Rescaling):
                x = x * float(layer.scale) + float(layer.offset)
            elif isinstance(layer, keras.layers.Conv2D):
                groups = (
                    x.shape[1] if isinstance(layer, keras.layers.DepthwiseConv2D) else 1
                )
                kh, kw = layer.kernel_size
                sh, sw = layer.strides
                if layer.padding == "same":
                    top, bottom = same_padding(x.shape[2], kh, sh)
                    left, right = same_padding(x.shape[3], kw, sw)
                    x = F.pad(x, (left, right, top, bottom))
                bias = w[1] if len(w) > 1 else None
                x = F.conv2d(x, w[0], bias, stride=(sh, sw), groups=groups)
            elif isinstance(layer, keras.layers.BatchNormalization):
                bn_inputs.append((layer.name, x))
                x = self._bn(x, w, layer.epsilon, training=False)
            elif isinstance(layer, keras.layers.ReLU):
                x = F.relu(x)
                if layer.max_value is not None:
                    x = x.clamp(max=float(layer.max_value))
            elif isinstance(layer, keras.layers.Add):
                x = sum(args[1:], args[0])
            elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
                x = x.mean(dim=(2, 3))
            elif isinstance(layer, keras.layers.Dense):
                x = x @ w[0] + w[1]
            values[layer.name] = x
        return x, bn_inputs

    def loss(self):
        torch = self.torch
        standardized = self._generate()
        images = standardized * self.std + self.mean
        _, bn_inputs = self.classify(images)
        total = 0.0
        for name, a in bn_inputs:
            mu, sigma = self.bn_targets[name]
            mean = a.mean(dim=(0, 2, 3))
            std = torch.sqrt(a.var(dim=(0, 2, 3), unbiased=False) + 1e-5)
            total = total + ((mean - mu) ** 2 + (std - sigma) ** 2).sum() / mu.numel()
        mean = standardized.mean(dim=(2, 3))
        std = torch.sqrt(standardized.var(dim=(2, 3), unbiased=False) + 1e-5)
        prior = (mean**2 + (std - 1.0) ** 2).sum(-1).mean() / standardized.shape[1]
        return total + prior

    def step(self):
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn()
        loss.backward()
        for optimizer in self.optimizers:
            optimizer.step()
        return float(loss.detach())


class TensorFlowStep:
    """One GENIE step in plain TensorFlow (NHWC), traced once by `tf.function`."""

    def __init__(self, model, generator, state, batch_size, config, compiled=False):
        import tensorflow as tf

        self.tf = tf
        self.steps = _classifier_ops(model)
        self.consts = {}
        for layer, _ in self.steps:
            _check_supported(layer)
            self.consts[layer.name] = [
                tf.constant(np.asarray(w)) for w in layer.get_weights()
            ]
        self.latents = tf.Variable(state["latents"])
        params = [state[n] for n in sorted(state) if n.startswith("generator_")]
        self.gen, self.trainable = [], [self.latents]
        for layer in generator.layers:
            count = len(layer.weights)
            weights, params = params[:count], params[count:]
            trained = len(layer.trainable_weights)
            weights = [tf.Variable(w) for w in weights[:trained]] + [
                tf.constant(w) for w in weights[trained:]
            ]
            self.trainable += weights[:trained]
            self.gen.append((layer, weights))
        self.rates = [config.latent_lr] + [config.generator_lr] * (
            len(self.trainable) - 1
        )
        self.moments = [
            (tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v)))
            for v in self.trainable
        ]
        self.count = tf.Variable(0.0)
        self.mean, self.std = _SPACE
        self.step_fn = tf.function(self._step, jit_compile=compiled)

    def _generate(self):
        tf = self.tf
        x = self.latents
        for layer, w in self.gen:
            if isinstance(layer, keras.layers.Dense):
                x = x @ w[0] + w[1]
            elif isinstance(layer, keras.layers.Reshape):
                x = tf.reshape(x, (-1, *layer.target_shape))
            elif isinstance(layer, keras.layers.BatchNormalization):
                mean, var = tf.nn.moments(x, axes=(0, 1, 2))
                scale = w[0] if len(w) == 4 else None
                offset = w[1] if len(w) == 4 else None
                x = tf.nn.batch_normalization(
                    x, mean, var, offset, scale, layer.epsilon
                )
            elif isinstance(layer, keras.layers.UpSampling2D):
                x = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
            elif isinstance(layer, keras.layers.Conv2D):
                x = tf.nn.conv2d(x, w[0], 1, "SAME") + w[1]
            elif isinstance(layer, keras.layers.LeakyReLU):
                x = tf.nn.leaky_relu(x, 0.2)
            elif isinstance(layer, keras.layers.Cropping2D):
                (top, bottom), (left, right) = layer.cropping
                x = x[:, top : x.shape[1] - bottom, left : x.shape[2] - right]
            elif isinstance(layer, keras.layers.Activation):
                x = tf.tanh(x)
        return x

    def classify(self, images):
        """Logits and BatchNorm inputs of the frozen classifier (NHWC images)."""
        tf = self.tf
        values, bn_inputs = {}, []
        for layer, sources in self.steps:
            w = self.consts[layer.name]
            args = [values.get(s, images) for s in sources]
            x = args[0]
            if isinstance(layer, keras.layers.Rescaling):
                x = x * float(layer.scale) + float(layer.offset)
            elif isinstance(layer, keras.layers.DepthwiseConv2D):
                x = tf.nn.depthwise_conv2d(
                    x, w[0], (1, *layer.strides, 1), layer.padding.upper()
                )
                x = x + w[1] if len(w) > 1 else x
            elif isinstance(layer, keras.layers.Conv2D):
                x = tf.nn.conv2d(x, w[0], layer.strides, layer.padding.upper())
                x = x + w[1] if len(w) > 1 else x
            elif isinstance(layer, keras.layers.BatchNormalization):
                bn_inputs.append((layer, x))
                gamma, beta, mean, var = w
                x = tf.nn.batch_normalization(x, mean, var, beta, gamma, layer.epsilon)
            elif isinstance(layer, keras.layers.ReLU):
                x = tf.nn.relu(x)
                if layer.max_value is not None:
                    x = tf.minimum(x, float(layer.max_value))
            elif isinstance(layer, keras.layers.Add):
                x = tf.add_n(args)
            elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
                x = tf.reduce_mean(x, axis=(1, 2))
            elif isinstance(layer, keras.layers.Dense):
                x = x @ w[0] + w[1]
            values[layer.name] = x
        return x, bn_inputs

    def _loss(self):
        tf = self.tf
        standardized = self._generate()
        images = standardized * self.std + self.mean
        _, bn_inputs = self.classify(images)
        total = 0.0
        for layer, a in bn_inputs:
            _, _, mu, var = self.consts[layer.name]
            sigma = tf.sqrt(var + layer.epsilon)
            mean, variance = tf.nn.moments(a, axes=(0, 1, 2))
            std = tf.sqrt(variance + 1e-5)
            total += tf.reduce_sum((mean - mu) ** 2 + (std - sigma) ** 2) / mu.shape[0]
        mean, variance = tf.nn.moments(standardized, axes=(1, 2))
        std = tf.sqrt(variance + 1e-5)
        prior = tf.reduce_mean(tf.reduce_sum(mean**2 + (std - 1.0) ** 2, -1))
        return total + prior / standardized.shape[-1]

    def _step(self):
        tf = self.tf
        with tf.GradientTape() as tape:
            loss = self._loss()
        grads = tape.gradient(loss, self.trainable)
        tf_adam_update(self, grads)
        return loss

    def step(self):
        return float(self.step_fn())


class _StepTimer(keras.callbacks.Callback):
    def on_train_batch_end(self, step, logs=None):
        if step == 0:
            self.start = time.perf_counter()
        self.end, self.timed = time.perf_counter(), step


def _library_seconds(trainer, steps):
    timer = _StepTimer()
    trainer.run(steps + 1, "timing", verbose=0, callbacks=[timer])
    return (timer.end - timer.start) / timer.timed


def _plain_seconds(plain, steps):
    plain.step()
    start = time.perf_counter()
    for _ in range(steps):
        plain.step()
    return (time.perf_counter() - start) / steps


def _torch_flops(plain):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        plain.step()
    return counter.get_total_flops()


def _matmul_gflops(size=2048, repeats=20):
    """Sustained float32 matrix-product rate of the active framework."""
    if keras.backend.backend() == "torch":
        import torch

        a = torch.randn(size, size)
        product = lambda: torch.mm(a, a)  # noqa: E731
    else:
        import tensorflow as tf

        a = tf.random.normal((size, size))
        product = tf.function(lambda: tf.linalg.matmul(a, a))
    product()
    start = time.perf_counter()
    for _ in range(repeats):
        np.asarray(product())
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def _genie_contenders(name, batch_size, steps):
    """`(first losses, FLOPs per step, {name: seconds of `steps` steps})`."""
    model = load_reference_model(name)
    config = synthesis_config("genie", batch_size=batch_size)
    trainer = SynthesisTrainer(BatchNormProbe(model), config, batch_size, *_SPACE)
    state = trainer.state()
    args = (model, trainer.generator, state, batch_size, config)
    if keras.backend.backend() == "torch":
        plains = {
            "plain": TorchStep(*args, channels_last=False),
            "plain_channels_last": TorchStep(*args, channels_last=True),
            "plain_compiled": TorchStep(*args, channels_last=False, compiled=True),
        }
    else:
        plains = {
            "plain": TensorFlowStep(*args),
            "plain_compiled": TensorFlowStep(*args, compiled=True),
        }
    # The library step with `jit_compile`: XLA on TensorFlow, torch.compile
    # on torch (Keras' own switch; the library's trainers leave it off).
    compiled = SynthesisTrainer(BatchNormProbe(model), config, batch_size, *_SPACE)
    compiled.compile(jit_compile=True)
    # The same first loss: all compute the same thing.
    first_losses = {
        key: float(t.run(1, "check", verbose=0).history["loss"][0])
        for key, t in (("library", trainer), ("library_compiled", compiled))
    }
    first_losses.update({k: p.step() for k, p in plains.items()})
    flops = _torch_flops(TorchStep(*args, channels_last=False))
    contenders = {
        "library": lambda: _library_seconds(trainer, steps),
        "library_compiled": lambda: _library_seconds(compiled, steps),
    }
    for key, plain in plains.items():
        contenders[key] = functools.partial(_plain_seconds, plain, steps)
    return first_losses, flops, contenders


def _block_data(name, block_index, count):
    """A calibrated W4A4 model's block and its float inputs and outputs."""
    model = load_reference_model(name)
    qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4))
    shape = tuple(model.inputs[0].shape[1:])
    images = np.random.default_rng(0).uniform(size=(count, *shape))
    images = images.astype("float32")
    ks.calibrate_activations(qmodel, images)
    _, blocks = find_blocks(qmodel)
    with ks.quantization_off(qmodel):
        x = images
        for block in blocks[:block_index]:
            x = keras.ops.convert_to_numpy(block(x))
        target = keras.ops.convert_to_numpy(blocks[block_index](x))
    return blocks[block_index], x, target


def _reconstruction_contenders(name, batch_size, steps, block_index, count):
    block, inputs, target = _block_data(name, block_index, count)
    plain_class = (
        TorchBlockStep if keras.backend.backend() == "torch" else TensorFlowBlockStep
    )
    # One full batch without QDrop first: with no randomness left, the
    # library's loss and the plain one must agree.
    check = reconstruction_config(steps=1, batch_size=count, qdrop_probability=0.0)
    _set_block_mode(block, "soft", 0.0)
    first_losses = {
        "plain": plain_class(block, inputs, inputs, target, check).step(),
        "library": float(
            BlockTrainer(block, check)
            .run(inputs, inputs, target, verbose=0)
            .history["loss"][0]
        ),
    }
    block, inputs, target = _block_data(name, block_index, count)
    config = reconstruction_config(steps=steps + 1, batch_size=batch_size)
    _set_block_mode(block, "soft", config.qdrop_probability)
    trainer = BlockTrainer(block, config)
    compiled = BlockTrainer(block, config)
    compiled.compile(jit_compile=True)
    plain = plain_class(block, inputs, inputs, target, config)
    flops = _torch_flops(TorchBlockStep(block, inputs, inputs, target, config))

    def library(trainer):
        timer = _StepTimer()
        trainer.run(inputs, inputs, target, verbose=0, callbacks=[timer])
        return (timer.end - timer.start) / timer.timed

    contenders = {
        "library": functools.partial(library, trainer),
        "library_compiled": functools.partial(library, compiled),
        "plain": functools.partial(_plain_seconds, plain, steps),
    }
    return first_losses, flops, contenders


def measure(name, step, batch_size, steps, rounds):
    """One row: the contenders of `step` timed in alternating rounds."""
    if step == "genie":
        first_losses, flops, contenders = _genie_contenders(name, batch_size, steps)
    else:
        first_losses, flops, contenders = _reconstruction_contenders(
            name, batch_size, steps, _BLOCK.value, _IMAGES.value
        )
    seconds = {k: [] for k in contenders}
    for _ in range(rounds):
        for key, seconds_of in contenders.items():
            seconds[key].append(seconds_of())
    median = {k: float(np.median(v)) for k, v in seconds.items()}
    row = dict(
        model=name,
        backend=keras.backend.backend(),
        commit=git_commit(),
        step=step,
        batch_size=batch_size,
        steps_per_round=steps,
        rounds=rounds,
        first_loss=first_losses,
        seconds_per_step=median,
        seconds_all=seconds,
        library_over_plain={
            k: median["library"] / v for k, v in median.items() if k != "library"
        },
        gflop_per_step=flops / 1e9,
        gflop_per_s={k: flops / 1e9 / v for k, v in median.items()},
        matmul_peak_gflop_per_s=_matmul_gflops(),
        load_average=os.getloadavg()[0],
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
    )
    if step == "reconstruction":
        row.update(block=_BLOCK.value, images=_IMAGES.value)
    return row


def main(argv):
    del argv
    batch_size = _BATCH_SIZE.value or {"genie": 128, "reconstruction": 32}[_STEP.value]
    row = measure(_MODEL.value, _STEP.value, batch_size, _STEPS.value, _ROUNDS.value)
    print(json.dumps(row, indent=1), flush=True)
    save_row(_RESULTS.value, row, ("model", "backend", "step", "batch_size", "commit"))


if __name__ == "__main__":
    app.run(main)
