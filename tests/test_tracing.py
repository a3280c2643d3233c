import keras
from keras import layers

from keras_sagdq.graph import tracing
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import tiny_resnet


def _nested_model():
    inner = keras.Sequential(
        [keras.Input((6, 6, 4)), layers.Conv2D(4, 1, name="inner_conv"), layers.ReLU()],
        name="inner",
    )
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    y = inner(x)
    x = layers.Add()([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs)


class TraceTest(TestCase):
    def test_nested_models_are_inlined(self):
        graph = tracing.trace(_nested_model())
        names = [s.layer.name for s in graph.steps]
        self.assertIn("inner_conv", names)
        self.assertNotIn("inner", names)

    def test_subclassed_nested_model_raises(self):
        class Sub(keras.Model):
            def call(self, x):
                return x

        inputs = keras.Input((4,))
        model = keras.Model(inputs, Sub()(inputs))
        with self.assertRaisesRegex(TypeError, "subclassed"):
            tracing.trace(model)


class ReplayTest(TestCase):
    def test_replay_computes_the_model(self):
        for model in (tiny_resnet(), _nested_model()):
            graph = tracing.trace(model)
            x = random_images(2, tuple(model.inputs[0].shape[1:]))
            values = tracing.replay(graph.steps, {graph.inputs[0]: x})
            self.assertAllClose(values[graph.outputs[0]], model(x), atol=1e-5)

    def test_store_sees_every_tensor_and_its_result_is_used(self):
        model = _nested_model()
        graph = tracing.trace(model)
        seen = []

        def store(i, value):
            seen.append(i)
            return value * 0.0 if i == graph.inputs[0] else value

        x = random_images(2, (6, 6, 3))
        values = tracing.replay(graph.steps, {graph.inputs[0]: x}, store=store)
        produced = [i for s in graph.steps for i in s.outputs]
        self.assertEqual(seen, [graph.inputs[0]] + produced)
        # A zero input: the stored value, not the given one, reached the layers.
        zero = model(x * 0.0)
        self.assertAllClose(values[graph.outputs[0]], zero, atol=1e-6)

    def test_call_hook_replaces_a_layer(self):
        model = _nested_model()
        graph = tracing.trace(model)

        def call(step, args, kwargs):
            if step.layer.name == "head":
                return keras.ops.zeros((args[0].shape[0], 3))
            return step.layer(*args, **kwargs)

        outputs, _ = tracing.tap(graph, random_images(2, (6, 6, 3)), [], call=call)
        self.assertAllClose(outputs, keras.ops.zeros((2, 3)))

    def test_tap_returns_intermediate_tensors(self):
        model = _nested_model()
        graph = tracing.trace(model)
        head = [s for s in graph.steps if s.layer.name == "head"][0]
        x = random_images(2, (6, 6, 3))
        outputs, (features,) = tracing.tap(graph, x, [head.input_ids[0]])
        pooled = keras.Model(model.inputs, model.get_layer("head").input)(x)
        self.assertAllClose(features, pooled, atol=1e-5)
        self.assertAllClose(outputs, model(x), atol=1e-5)
