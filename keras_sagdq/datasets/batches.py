"""Shuffled, augmented training batches for the scripts that train our models."""

import keras
import numpy as np


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled batches with random horizontal flips and random shifts.

    Args:
        images: `(N, H, W, C)` training images.
        labels: `(N,)` labels.
        batch_size: images per batch (the last partial batch is dropped).
        seed: seed of the order, the flips and the shifts.
        max_shift: each batch is shifted by up to this many pixels in each
            direction, filling with zeros (the background of [0, 1] pixels);
            0 turns shifting off.

    Example:

    >>> batches = AugmentedBatches(x_train, y_train, 32, seed=0, max_shift=2)
    >>> model.compile("adam", "sparse_categorical_crossentropy")
    >>> history = model.fit(batches, epochs=8, verbose=0)
    """

    def __init__(self, images, labels, batch_size, seed, max_shift=2):
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.max_shift = max_shift
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images))

    def __len__(self):
        return len(self.images) // self.batch_size

    def __getitem__(self, index):
        idx = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        x = self.images[idx]
        flip = self.rng.random(len(x)) < 0.5
        x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
        if not self.max_shift:
            return x, self.labels[idx]
        m = self.max_shift
        height, width = x.shape[1:3]
        padded = np.pad(x, ((0, 0), (m, m), (m, m), (0, 0)))
        dy, dx = self.rng.integers(0, 2 * m + 1, 2)
        return padded[:, dy : dy + height, dx : dx + width], self.labels[idx]

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.images))
