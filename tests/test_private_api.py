import keras
from keras import layers

from keras_sagdq import private_api
from tests.test_case import TestCase


def _model():
    inputs = keras.Input((4,), name="x")
    a = layers.Dense(3, name="a")(inputs)
    b = layers.Dense(3, name="b")(inputs)
    outputs = layers.Add(name="add")([a, b])
    return keras.Model(inputs, outputs)


class PrivateApiTest(TestCase):
    """Fails first when a Keras upgrade changes one of the private APIs."""

    def test_functional_nodes_are_in_topological_order(self):
        model = _model()
        self.assertTrue(private_api.is_functional(model))
        self.assertFalse(private_api.is_functional(keras.layers.Dense(2)))
        names = [n.operation.name for n in private_api.functional_nodes(model)]
        self.assertEqual(names[0], "x")
        self.assertEqual(names[-1], "add")
        self.assertEqual(set(names[1:3]), {"a", "b"})

    def test_node_call_arguments_keep_the_structure(self):
        model = _model()
        add = private_api.functional_nodes(model)[-1]
        refs = {id(x): name for x, name in zip(add.input_tensors, ("A", "B"))}
        args, kwargs = private_api.node_call_arguments(add, refs)
        self.assertEqual(args, (["A", "B"],))
        self.assertEqual(kwargs, {})

    def test_producing_layer(self):
        model = _model()
        self.assertEqual(private_api.producing_layer(model.outputs[0]).name, "add")

    def test_call_inputs(self):
        inputs = keras.Input((3,))
        a = keras.layers.Dense(2)(inputs)
        b = keras.layers.Dense(2)(inputs)
        total = keras.layers.Add()([a, b])
        self.assertEqual(
            [id(t) for t in private_api.call_inputs(total)], [id(a), id(b)]
        )
        self.assertEqual(private_api.call_inputs(inputs), [])

    def test_single_replica_all_reduce_is_skipped(self):
        if keras.backend.backend() != "tensorflow":
            self.skipTest("Keras' TensorFlow optimizer only")
        from keras.src.backend.tensorflow.optimizer import TFOptimizer

        # If Keras renames the method, skipping it would silently do nothing.
        self.assertTrue(callable(TFOptimizer._all_reduce_sum_gradients))
        optimizer = keras.optimizers.Adam(0.1)
        private_api.skip_single_replica_all_reduce(optimizer)
        pairs = [("g", "v")]
        self.assertIs(optimizer._all_reduce_sum_gradients(pairs), pairs)
