"""One block-reconstruction step in plain PyTorch and plain TensorFlow.

Used by `plain_reference.py --step=reconstruction`: the same step as
`BlockTrainer.train_step` on one block of the library's quantized model,
read from its `Block.steps` and written with the framework's own ops:
input mixing of the float and quantized streams, AdaRound soft rounding of
the weights on their learned steps, LSQ activation quantizers with QDrop,
the squared error summed over channels plus the annealed rounding
regularizer, and Adam on the weight steps, the activation steps and the
rounding logits. Left out of both: the cosine decay of the activation-step
rate (a scalar per step). Only the layers of a ResNet-style block are
translated (quantized Conv2D, activation quantizer, ReLU, Add).
"""

import keras
import numpy as np

from keras_sagdq.layers import ActivationQuantizer
from keras_sagdq.layers.quantized_layers import QuantConv2D
from keras_sagdq.quantizers import GAMMA
from keras_sagdq.quantizers import ZETA


def same_padding(size, kernel, stride):
    """TensorFlow's SAME padding `(before, after)` of one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def tf_adam_update(step, grads):
    """Adam (Keras' defaults) on `step.trainable`, in TensorFlow ops.

    `step` holds `trainable`, `moments` (a pair of variables per trainable
    one), `rates` and `count` (the update count, a variable).
    """
    import tensorflow as tf

    step.count.assign_add(1.0)
    t = step.count
    for v, g, (m, s), rate in zip(step.trainable, grads, step.moments, step.rates):
        m.assign(0.9 * m + 0.1 * g)
        s.assign(0.999 * s + 0.001 * g * g)
        m_hat = m / (1.0 - 0.9**t)
        s_hat = s / (1.0 - 0.999**t)
        v.assign_sub(rate * m_hat / (tf.sqrt(s_hat) + 1e-7))


def _schedule(config, iteration):
    """`(beta, rounding weight)` at `iteration`, as `BlockTrainer` computes them."""
    warmup_steps = config.warmup * config.steps
    progress = (iteration - warmup_steps) / max(config.steps - warmup_steps, 1.0)
    progress = min(max(progress, 0.0), 1.0)
    beta = config.beta_end + (config.beta_start - config.beta_end) * (1.0 - progress)
    weight = config.rounding_weight if iteration >= warmup_steps else 0.0
    return beta, weight


def _check(block):
    for step in block.steps:
        kinds = (QuantConv2D, ActivationQuantizer, keras.layers.ReLU, keras.layers.Add)
        if not isinstance(step.layer, kinds) or isinstance(
            step.layer, keras.layers.DepthwiseConv2D
        ):
            raise ValueError(f"No plain translation for {step.layer.name!r}.")


def _array(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable))


class TorchBlockStep:
    """A block's reconstruction step in PyTorch (NCHW)."""

    def __init__(self, block, fp_inputs, q_inputs, target, config, seed=0):
        import torch

        _check(block)
        self.torch, self.block, self.config = torch, block, config
        self.generator = torch.Generator().manual_seed(seed)

        def nchw(a):
            return torch.tensor(np.transpose(a, (0, 3, 1, 2))).contiguous()

        self.data = [nchw(a) for a in (fp_inputs, q_inputs, target)]
        self.layers = {}
        groups = [[], [], []]
        for step in block.steps:
            layer = step.layer
            if isinstance(layer, QuantConv2D):

                def oihw(v):
                    return torch.tensor(_array(v).transpose(3, 2, 0, 1)).contiguous()

                weights = dict(
                    base=oihw(layer.weight_base),
                    zero_point=oihw(layer.weight_zero_point),
                    step=oihw(layer.weight_step).requires_grad_(True),
                    logits=oihw(layer.rounding_logits).requires_grad_(True),
                    bias=torch.tensor(_array(layer.bias)),
                    input_step=float(_array(layer.input_step)),
                )
                groups[0].append(weights["step"])
                groups[2].append(weights["logits"])
                self.layers[layer.name] = weights
            elif isinstance(layer, ActivationQuantizer):
                step_size = torch.tensor(_array(layer.step), requires_grad=True)
                self.layers[layer.name] = dict(step=step_size)
                if layer.trainable:
                    groups[1].append(step_size)
        rates = (config.weight_step_lr, config.activation_step_lr, config.rounding_lr)
        self.optimizers = [
            torch.optim.Adam(group, lr=rate)
            for group, rate in zip(groups, rates)
            if group
        ]
        self.iteration = 0

    def _soft(self, logits):
        return (self.torch.sigmoid(logits) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def _run(self, x):
        torch, F = self.torch, self.torch.nn.functional
        values = {self.block.input_id: x}
        for step in self.block.steps:
            layer, args = step.layer, [values[i] for i in step.input_ids]
            x = args[0]
            if isinstance(layer, QuantConv2D):
                w = self.layers[layer.name]
                qmin, qmax = layer.weight_integer_range
                q = (w["base"] + self._soft(w["logits"]) + w["zero_point"]).clamp(
                    qmin, qmax
                )
                kernel = (q - w["zero_point"]) * w["step"]
                unit = (w["input_step"] * w["step"].reshape(-1)).detach()
                bias = torch.round(w["bias"] / unit) * unit
                (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
                if layer.padding == "same":
                    top, bottom = same_padding(x.shape[2], kh, sh)
                    left, right = same_padding(x.shape[3], kw, sw)
                    x = F.pad(x, (left, right, top, bottom))
                x = F.conv2d(x, kernel, bias, stride=(sh, sw))
            elif isinstance(layer, ActivationQuantizer):
                s = self.layers[layer.name]["step"]
                qmin, qmax = layer.integer_range
                scaled = x / s
                rounded = scaled + (torch.round(scaled) - scaled).detach()
                quantized = rounded.clamp(qmin, qmax) * s
                keep = torch.rand(x.shape, generator=self.generator)
                x = torch.where(keep < self.config.qdrop_probability, x, quantized)
            elif isinstance(layer, keras.layers.ReLU):
                x = F.relu(x)
            elif isinstance(layer, keras.layers.Add):
                x = sum(args[1:], args[0])
            values[step.outputs[0]] = x
        return values[self.block.output_id]

    def step(self):
        torch, c = self.torch, self.config
        count = len(self.data[0])
        batch = min(c.batch_size, count)
        indices = torch.randperm(count, generator=self.generator)[:batch]
        fp_inputs, q_inputs, target = (a[indices] for a in self.data)
        mix = torch.rand(fp_inputs.shape, generator=self.generator) < c.input_mix
        inputs = torch.where(mix, fp_inputs, q_inputs)
        beta, weight = _schedule(c, self.iteration)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        outputs = self._run(inputs)
        loss = ((outputs - target) ** 2).sum(1).mean()
        for w in self.layers.values():
            if "logits" in w:
                h = self._soft(w["logits"])
                loss = loss + weight * (1.0 - (2.0 * h - 1.0).abs() ** beta).sum()
        loss.backward()
        for optimizer in self.optimizers:
            optimizer.step()
        self.iteration += 1
        return float(loss.detach())


class TensorFlowBlockStep:
    """A block's reconstruction step in TensorFlow (NHWC), one `tf.function`."""

    def __init__(self, block, fp_inputs, q_inputs, target, config, seed=0):
        import tensorflow as tf

        _check(block)
        self.tf, self.block, self.config = tf, block, config
        self.data = [tf.constant(a) for a in (fp_inputs, q_inputs, target)]
        self.rng = np.random.default_rng(seed)
        tf.random.set_seed(seed)
        self.layers, self.trainable, self.rates = {}, [], []
        for step in block.steps:
            layer = step.layer
            if isinstance(layer, QuantConv2D):
                weights = dict(
                    base=tf.constant(_array(layer.weight_base)),
                    zero_point=tf.constant(_array(layer.weight_zero_point)),
                    step=tf.Variable(_array(layer.weight_step)),
                    logits=tf.Variable(_array(layer.rounding_logits)),
                    bias=tf.constant(_array(layer.bias)),
                    input_step=float(_array(layer.input_step)),
                )
                self.trainable += [weights["step"], weights["logits"]]
                self.rates += [config.weight_step_lr, config.rounding_lr]
                self.layers[layer.name] = weights
            elif isinstance(layer, ActivationQuantizer):
                step_size = tf.Variable(_array(layer.step))
                self.layers[layer.name] = dict(step=step_size)
                if layer.trainable:
                    self.trainable.append(step_size)
                    self.rates.append(config.activation_step_lr)
        self.moments = [
            (tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v)))
            for v in self.trainable
        ]
        self.count = tf.Variable(0.0)
        self.step_fn = tf.function(self._step)
        self.iteration = 0

    def _soft(self, logits):
        tf = self.tf
        return tf.clip_by_value(tf.sigmoid(logits) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    def _run(self, x):
        tf = self.tf
        values = {self.block.input_id: x}
        for step in self.block.steps:
            layer, args = step.layer, [values[i] for i in step.input_ids]
            x = args[0]
            if isinstance(layer, QuantConv2D):
                w = self.layers[layer.name]
                qmin, qmax = layer.weight_integer_range
                q = tf.clip_by_value(
                    w["base"] + self._soft(w["logits"]) + w["zero_point"], qmin, qmax
                )
                kernel = (q - w["zero_point"]) * w["step"]
                unit = tf.stop_gradient(w["input_step"] * tf.reshape(w["step"], (-1,)))
                bias = tf.round(w["bias"] / unit) * unit
                x = tf.nn.conv2d(x, kernel, layer.strides, layer.padding.upper()) + bias
            elif isinstance(layer, ActivationQuantizer):
                s = self.layers[layer.name]["step"]
                qmin, qmax = layer.integer_range
                scaled = x / s
                rounded = scaled + tf.stop_gradient(tf.round(scaled) - scaled)
                quantized = tf.clip_by_value(rounded, qmin, qmax) * s
                keep = tf.random.uniform(tf.shape(x)) < self.config.qdrop_probability
                x = tf.where(keep, x, quantized)
            elif isinstance(layer, keras.layers.ReLU):
                x = tf.nn.relu(x)
            elif isinstance(layer, keras.layers.Add):
                x = tf.add_n(args)
            values[step.outputs[0]] = x
        return values[self.block.output_id]

    def _step(self, indices, beta, weight):
        tf = self.tf
        fp_inputs, q_inputs, target = (tf.gather(a, indices) for a in self.data)
        mix = tf.random.uniform(tf.shape(fp_inputs)) < self.config.input_mix
        inputs = tf.where(mix, fp_inputs, q_inputs)
        with tf.GradientTape() as tape:
            outputs = self._run(inputs)
            loss = tf.reduce_mean(tf.reduce_sum((outputs - target) ** 2, -1))
            for w in self.layers.values():
                if "logits" in w:
                    h = self._soft(w["logits"])
                    loss += weight * tf.reduce_sum(1.0 - tf.abs(2.0 * h - 1.0) ** beta)
        grads = tape.gradient(loss, self.trainable)
        tf_adam_update(self, grads)
        return loss

    def step(self):
        c, count = self.config, int(self.data[0].shape[0])
        indices = self.rng.choice(count, min(c.batch_size, count), replace=False)
        beta, weight = _schedule(c, self.iteration)
        self.iteration += 1
        return float(
            self.step_fn(
                self.tf.constant(indices, self.tf.int32),
                self.tf.constant(beta, self.tf.float32),
                self.tf.constant(weight, self.tf.float32),
            )
        )
