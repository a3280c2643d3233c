"""Graph rewrite: quantized twin of a model, BN folding, the layer report."""

from keras_sagdq.graph.report import LayerReport
from keras_sagdq.graph.report import QuantizationReport
from keras_sagdq.graph.rewrite import quantize_model
