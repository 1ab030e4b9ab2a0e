"""helpers.rnn against Keras (float64 parity), finite differences and tf.GradientTape."""

import numpy as np
import pytest

from helpers import rnn
from helpers.gradcheck import eval_numerical_gradient_array, rel_error

N, T, D, H = 3, 5, 4, 6


@pytest.fixture
def params():
    rng = np.random.default_rng(1)
    return dict(
        x=rng.normal(size=(N, T, D)),
        h0=rng.normal(size=(N, H)),
        Wx=rng.normal(scale=0.4, size=(D, H)),
        Wh=rng.normal(scale=0.4, size=(H, H)),
        b=rng.normal(scale=0.1, size=(H,)),
    )


def test_forward_matches_keras_simple_rnn_in_float64(params):
    import keras

    layer = keras.layers.SimpleRNN(H, return_sequences=True, dtype="float64")
    layer.build((None, T, D))
    layer.set_weights([params["Wx"], params["Wh"], params["b"]])
    expected = keras.ops.convert_to_numpy(layer(params["x"], initial_state=[params["h0"]]))
    h, _ = rnn.rnn_forward(**params)
    assert h.shape == (N, T, H)
    assert rel_error(h, expected) < 1e-7


def test_step_forward_by_hand():
    x, h, Wx, Wh, b = (
        np.array([[1.0, 2.0]]),
        np.array([[0.5]]),
        np.array([[0.1], [0.2]]),
        np.array([[0.3]]),
        np.array([0.05]),
    )
    next_h, _ = rnn.rnn_step_forward(x, h, Wx, Wh, b)
    assert next_h[0, 0] == pytest.approx(np.tanh(0.1 + 0.4 + 0.15 + 0.05))


def test_step_backward_matches_finite_differences(params):
    rng = np.random.default_rng(2)
    x, h, Wx, Wh, b = params["x"][:, 0], params["h0"], params["Wx"], params["Wh"], params["b"]
    dnext = rng.normal(size=(N, H))
    _, cache = rnn.rnn_step_forward(x, h, Wx, Wh, b)
    grads = rnn.rnn_step_backward(dnext, cache)
    inputs = [x, h, Wx, Wh, b]
    for i, analytic in enumerate(grads):

        def f(v, i=i):
            args = list(inputs)
            args[i] = v
            return rnn.rnn_step_forward(*args)[0]

        numeric = eval_numerical_gradient_array(f, inputs[i].copy(), dnext)
        assert rel_error(analytic, numeric) < 1e-6, ["dx", "dprev_h", "dWx", "dWh", "db"][i]


def test_backward_matches_finite_differences(params):
    rng = np.random.default_rng(3)
    dh = rng.normal(size=(N, T, H))
    _, cache = rnn.rnn_forward(**params)
    grads = rnn.rnn_backward(dh, cache)
    names = ["x", "h0", "Wx", "Wh", "b"]
    for name, analytic in zip(names, grads):

        def f(v, name=name):
            return rnn.rnn_forward(**{**params, name: v})[0]

        numeric = eval_numerical_gradient_array(f, params[name].copy(), dh)
        assert analytic.shape == params[name].shape
        assert rel_error(analytic, numeric) < 1e-6, name


def test_backward_matches_gradient_tape(params):
    import tensorflow as tf

    rng = np.random.default_rng(4)
    dh = rng.normal(size=(N, T, H))
    tensors = {k: tf.Variable(v) for k, v in params.items()}
    with tf.GradientTape() as tape:
        h, prev = [], tensors["h0"]
        for t in range(T):
            prev = tf.tanh(tensors["x"][:, t] @ tensors["Wx"] + prev @ tensors["Wh"] + tensors["b"])
            h.append(prev)
        loss = tf.reduce_sum(tf.stack(h, axis=1) * dh)
    expected = tape.gradient(loss, [tensors[k] for k in ["x", "h0", "Wx", "Wh", "b"]])
    _, cache = rnn.rnn_forward(**params)
    for analytic, ref in zip(rnn.rnn_backward(dh, cache), expected):
        assert rel_error(analytic, ref.numpy()) < 1e-10
