"""Quantizer layers: an activation quantizer and weight-quantized layers."""

from keras_sagdq.layers.activation_quantizer import ActivationQuantizer
from keras_sagdq.layers.modes import activation_quantizers
from keras_sagdq.layers.modes import quantization_off
from keras_sagdq.layers.modes import reset_compiled_functions
from keras_sagdq.layers.modes import set_layer_modes
from keras_sagdq.layers.modes import set_mode
from keras_sagdq.layers.modes import weight_layers
from keras_sagdq.layers.quantized_layers import QUANTIZED_LAYERS
from keras_sagdq.layers.quantized_layers import QuantConv2D
from keras_sagdq.layers.quantized_layers import QuantDense
from keras_sagdq.layers.quantized_layers import QuantDepthwiseConv2D
from keras_sagdq.layers.quantized_layers import WeightQuantization
from keras_sagdq.layers.quantized_layers import quantized_class_for
from keras_sagdq.layers.shared_grid import SharedGrid
from keras_sagdq.layers.shared_grid import share_grids
