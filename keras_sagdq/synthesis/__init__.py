"""Data-free calibration images: GENIE-D, ZeroQ and Gaussian baselines."""

from keras_sagdq.synthesis.generator import build_generator
from keras_sagdq.synthesis.image_grid import save_image_grid
from keras_sagdq.synthesis.probe import BatchNormProbe
from keras_sagdq.synthesis.probe import input_normalization
from keras_sagdq.synthesis.swing import SwingShift
from keras_sagdq.synthesis.synthesize import SynthesisConfig
from keras_sagdq.synthesis.synthesize import synthesis_config
from keras_sagdq.synthesis.synthesize import synthesize
