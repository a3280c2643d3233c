"""Data-free calibration images: GENIE-D, ZeroQ and Gaussian baselines."""

from keras_sagdq.synthesis.diagnostics import SynthesisWarning
from keras_sagdq.synthesis.diagnostics import check_images
from keras_sagdq.synthesis.generator import build_generator
from keras_sagdq.synthesis.image_grid import save_image_grid
from keras_sagdq.synthesis.input_space import InputSpace
from keras_sagdq.synthesis.input_space import declared_input_space
from keras_sagdq.synthesis.input_space import infer_input_space
from keras_sagdq.synthesis.input_space import resolve_input_space
from keras_sagdq.synthesis.probe import BatchNormProbe
from keras_sagdq.synthesis.sharding import Shard
from keras_sagdq.synthesis.swing import SwingShift
from keras_sagdq.synthesis.synthesize import SynthesisConfig
from keras_sagdq.synthesis.synthesize import synthesis_config
from keras_sagdq.synthesis.synthesize import synthesize
