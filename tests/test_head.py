import keras
import numpy as np
from keras import layers

from keras_sagdq.graph import tracing
from keras_sagdq.graph.head import find_classifier_head
from keras_sagdq.graph.head import pre_activation_logits
from tests.test_case import TestCase
from tests.test_case import tiny_resnet


def _classifier(head_activation=None, softmax_layer=False):
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, name="conv")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(3, activation=head_activation, name="head")(x)
    if softmax_layer:
        x = layers.Softmax()(x)
    return keras.Model(inputs, x)


class ClassifierHeadTest(TestCase):
    def test_finds_the_last_dense_through_activation_layers(self):
        for model in (
            tiny_resnet(),
            _classifier("softmax"),
            _classifier(softmax_layer=True),
        ):
            step = find_classifier_head(tracing.trace(model))
            self.assertEqual(step.layer.name, "head")

    def test_pre_activation_logits_skip_the_softmax(self):
        model = _classifier("softmax")
        x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
        graph = tracing.trace(model)
        step = find_classifier_head(graph)
        probabilities, (features,) = tracing.tap(graph, x, [step.input_ids[0]])
        logits = pre_activation_logits(step.layer, features)
        self.assertAllClose(keras.ops.softmax(logits), probabilities, atol=1e-6)
        self.assertGreater(
            np.abs(self.numpy(logits) - self.numpy(probabilities)).max(), 0.1
        )

    def test_model_without_a_dense_head_is_refused(self):
        inputs = keras.Input((8, 8, 1))
        x = layers.Conv2D(3, 3)(inputs)
        x = layers.BatchNormalization()(x)
        outputs = layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, outputs, name="pooled")
        with self.assertRaisesRegex(
            ValueError, "Dense.*'pooled'.*GlobalAveragePooling2D"
        ):
            find_classifier_head(tracing.trace(model), model.name)

    def numpy(self, x):
        return np.asarray(keras.ops.convert_to_numpy(x))
