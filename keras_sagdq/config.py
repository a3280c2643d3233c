"""`QuantConfig`: what to quantize, and at how many bits."""

import dataclasses

from keras_sagdq import quantizers


@dataclasses.dataclass
class QuantConfig:
    """Bit widths and conventions for `keras_sagdq.quantize_model`.

    The defaults follow the usual zero-shot quantization convention: the
    first layer gets 8-bit weights and a float input, the last layer 8-bit
    weights and an 8-bit input, everything else `weight_bits` /
    `activation_bits`.

    Args:
        weight_bits: weight bit width of the inner layers, 2..8.
        activation_bits: bit width of the inputs of the inner layers, 2..8.
        first_layer_weight_bits: weight bits of the first layer(s); `None`
            means `weight_bits`.
        quantize_first_layer_input: quantize the model input too (at
            `activation_bits`).
        last_layer_weight_bits: weight bits of the last layer(s); `None`
            means `weight_bits`.
        last_layer_activation_bits: input bits of the last layer(s); `None`
            means `activation_bits`.
        weight_symmetric: signed narrow weight grid `[-(2^(b-1) - 1),
            2^(b-1) - 1]` with zero point 0 instead of an asymmetric grid with a
            per-channel zero point. Layers with 8-bit weights are always
            symmetric: TFLite's int8 weights are `[-127, 127]` with zero point 0.
        weight_per_channel: one weight step per output channel.
        fold_batchnorm: fold each BatchNormalization into the Conv2D,
            DepthwiseConv2D or Dense right before it.
        skip_layers: names of layers to keep in float.
        weight_init_norm: `p` of the `mean|w - Q(w)|^p` step search.
        weight_range: `"lp"` (the clip-ratio search) or `"minmax"` (each
            channel's full range, no clipping: plain round-to-nearest).
        int8_tensors: also give an 8-bit grid to every tensor an integer
            runtime holds that no quantized layer reads (the input,
            convolution outputs feeding an addition, the sum, pooled
            features, the logits), so the Keras model computes what the
            exported `.tflite` computes instead of rounding those tensors
            only in the file. On by default: the file then agrees with the
            model on the class of >= 99.9 % of images (docs/deployment.md);
            off, the Keras model keeps those tensors float (a model that is
            never exported, or to compare with papers that do the same).
        activation_symmetry: the grid of signed activations: `"auto"` (per
            tensor, at calibration: a zero point where it gives the smaller
            quantization error, as for hard-swish and swish outputs that
            barely dip below zero), `"symmetric"` (`[-2^(b-1), 2^(b-1) - 1]`,
            no zero point) or `"asymmetric"` (always a zero point).
            Non-negative activations get `[0, 2^b - 1]` either way.

    Raises:
        ValueError: if a bit width is outside 2..8, `weight_init_norm` is
            not positive, or `activation_symmetry` is unknown.

    Example:

    >>> config = QuantConfig(weight_bits=4, activation_bits=4)
    >>> config = QuantConfig(weight_bits=2, activation_bits=4,
    ...                      skip_layers=("stem_conv",))
    """

    weight_bits: int = 4
    activation_bits: int = 4
    first_layer_weight_bits: int | None = 8
    quantize_first_layer_input: bool = False
    last_layer_weight_bits: int | None = 8
    last_layer_activation_bits: int | None = 8
    weight_symmetric: bool = False
    weight_per_channel: bool = True
    fold_batchnorm: bool = True
    skip_layers: tuple = ()
    weight_init_norm: float = quantizers.DEFAULT_NORM_P
    weight_range: str = "lp"
    int8_tensors: bool = True
    activation_symmetry: str = "auto"

    def __post_init__(self):
        quantizers.check_bits(self.weight_bits, "weight_bits")
        quantizers.check_bits(self.activation_bits, "activation_bits")
        for name in (
            "first_layer_weight_bits",
            "last_layer_weight_bits",
            "last_layer_activation_bits",
        ):
            if getattr(self, name) is not None:
                quantizers.check_bits(getattr(self, name), name)
        if isinstance(self.skip_layers, str):
            raise TypeError(
                "`skip_layers` must be a list of layer names, not one string. "
                f"Received: skip_layers={self.skip_layers!r}"
            )
        self.skip_layers = tuple(self.skip_layers)
        if self.weight_range not in ("lp", "minmax"):
            raise ValueError(
                "`weight_range` must be 'lp' or 'minmax'. "
                f"Received: weight_range={self.weight_range!r}"
            )
        if self.activation_symmetry not in quantizers.SYMMETRIES:
            raise ValueError(
                f"`activation_symmetry` must be one of {quantizers.SYMMETRIES}. "
                f"Received: activation_symmetry={self.activation_symmetry!r}"
            )
        if not self.weight_init_norm > 0:
            raise ValueError(
                "`weight_init_norm` must be positive. "
                f"Received: weight_init_norm={self.weight_init_norm}"
            )

    def weight_bits_for(self, position):
        """Weight bits of a layer at `position` ("first", "last" or "inner")."""
        special = {
            "first": self.first_layer_weight_bits,
            "last": self.last_layer_weight_bits,
        }.get(position)
        return self.weight_bits if special is None else special

    def input_bits_for(self, position):
        """Input activation bits of a layer at `position`; None = float input."""
        if position == "first" and not self.quantize_first_layer_input:
            return None
        if position == "last" and self.last_layer_activation_bits is not None:
            return self.last_layer_activation_bits
        return self.activation_bits


def with_overrides(config, overrides):
    """`config` (a dataclass) with fields replaced by `overrides`.

    Raises:
        ValueError: naming the config class and every override that is not
            one of its fields.
    """
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"Unknown {type(config).__name__} field(s) {unknown}; valid: "
            f"{sorted(fields)}. Received: "
            + ", ".join(f"{k}={overrides[k]!r}" for k in unknown)
        )
    return dataclasses.replace(config, **overrides)


def resolve_config(config, profile, presets, overrides):
    """The config a step runs with: `config` or a named preset, plus overrides.

    Args:
        config: a config object or None.
        profile: a key of `presets` or None (then `"fast"`); only without
            `config`.
        presets: `{profile: config}`, the named presets of the config class.
        overrides: `{field: value}` replacing fields of the chosen config.

    Raises:
        TypeError: if `config` is not of the presets' class.
        ValueError: for an unknown profile, both `config` and `profile`, or an
            unknown field.
    """
    cls = type(next(iter(presets.values())))
    if config is None:
        profile = "fast" if profile is None else profile
        if profile not in presets:
            raise ValueError(
                f"`profile` must be one of {sorted(presets)}. Received: "
                f"profile={profile!r}"
            )
        config = presets[profile]
    elif not isinstance(config, cls):
        raise TypeError(
            f"`config` must be a {cls.__name__}. Received: config of type "
            f"{type(config).__name__}"
        )
    elif profile is not None:
        raise ValueError(
            "Pass either `config` or `profile`, not both. Received: "
            f"profile={profile!r} and a {cls.__name__}"
        )
    return with_overrides(config, overrides)


def parse_overrides(items):
    """`["steps=500", "swing=false", "neighbor=random"]` -> typed config overrides.

    Values become bool (`true`/`false`), int, float, or stay strings, so
    command-line `key=value` lists reach `SynthesisConfig` and
    `ReconstructionConfig` with the types their fields expect.

    Args:
        items: strings `key=value`.

    Returns:
        A dict of overrides.

    Raises:
        ValueError: for an item without `=` or with an empty key.

    Example:

    >>> parse_overrides(["steps=500", "rho=2.5", "swing=false"])
    {'steps': 500, 'rho': 2.5, 'swing': False}
    """
    overrides = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"Options must be `key=value`. Received: {item!r}")
        key = key.strip()
        if value.lower() in ("true", "false"):
            overrides[key] = value.lower() == "true"
        elif value.lstrip("-").isdigit():
            overrides[key] = int(value)
        else:
            try:
                overrides[key] = float(value)
            except ValueError:
                overrides[key] = value
    return overrides
