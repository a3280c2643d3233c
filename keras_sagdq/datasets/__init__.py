"""Real image data sets for evaluation and benchmarks."""

from keras_sagdq.datasets.batches import AugmentedBatches
from keras_sagdq.datasets.fashion_mnist import load_fashion_mnist
