"""The per-layer report of a quantization: what was quantized, what was not, why."""

import dataclasses

import numpy as np


@dataclasses.dataclass
class LayerReport:
    """One row of a `QuantizationReport`.

    Attributes:
        name: layer name in the quantized model (or the folded layer's name).
        layer_type: class name of the original layer.
        status: `"quantized"`, `"folded"` (BatchNorm folded into the layer
            before it), `"float"` (kept in float) or `"passthrough"` (no
            weights; runs on whatever it receives).
        reason: why a layer is `"float"` or `"folded"`; empty otherwise.
        weight_bits: weight bits, or None.
        input_bits: bits of the quantized input, or None for a float input.
        weight_sqnr_db: SQNR of the hard-rounded weights against the float
            (folded) weights, in dB; None for non-quantized layers.

    Example:

    >>> row = qmodel.quantization_report.quantized_layers[0]
    >>> row.status, row.weight_bits
    ('quantized', 8)
    """

    name: str
    layer_type: str
    status: str
    reason: str = ""
    weight_bits: int | None = None
    input_bits: int | None = None
    weight_sqnr_db: float | None = None


class QuantizationReport:
    """Rows of `LayerReport`, one per layer of the original model.

    Example:

    >>> qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4))
    >>> print(qmodel.quantization_report)
    >>> [r.name for r in qmodel.quantization_report.float_layers]
    """

    def __init__(self, rows):
        self.rows = list(rows)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def with_status(self, status):
        return [r for r in self.rows if r.status == status]

    @property
    def quantized_layers(self):
        return self.with_status("quantized")

    @property
    def float_layers(self):
        return self.with_status("float")

    def __str__(self):
        header = ("layer", "type", "status", "W", "A", "SQNR dB", "note")
        lines = [header]
        for r in self.rows:
            sqnr = "" if r.weight_sqnr_db is None else f"{r.weight_sqnr_db:.1f}"
            lines.append(
                (
                    r.name,
                    r.layer_type,
                    r.status,
                    "" if r.weight_bits is None else str(r.weight_bits),
                    "" if r.input_bits is None else str(r.input_bits),
                    sqnr,
                    r.reason,
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = [
            "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
            for line in lines
        ]
        counts = {s: len(self.with_status(s)) for s in ("quantized", "folded", "float")}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        return "\n".join(text + [summary])


def sqnr_db(reference, approximation):
    """Signal-to-quantization-noise ratio `10 log10(|x|^2 / |x - q|^2)` in dB."""
    reference = np.asarray(reference, np.float64)
    noise = np.sum((reference - np.asarray(approximation, np.float64)) ** 2)
    signal = np.sum(reference**2)
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(signal / noise))
