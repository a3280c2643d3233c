"""TFLite integer export and its verification."""

from keras_sagdq.export.tflite import export_tflite
from keras_sagdq.export.verify import Divergence
from keras_sagdq.export.verify import TFLiteAgreement
from keras_sagdq.export.verify import delegate_partitions
from keras_sagdq.export.verify import first_divergence
from keras_sagdq.export.verify import input_range_of
from keras_sagdq.export.verify import ops_outside_delegate
from keras_sagdq.export.verify import run_tflite
from keras_sagdq.export.verify import verify_tflite
from keras_sagdq.input_range import choose_input_range
from keras_sagdq.input_range import default_input_range
