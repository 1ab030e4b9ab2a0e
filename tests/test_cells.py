"""helpers.cells: LSTM and GRU against Keras (float64) and finite differences, every gradient."""

import numpy as np
import pytest

from helpers import cells
from helpers.gradcheck import eval_numerical_gradient_array, rel_error

N, T, D, H = 3, 4, 5, 4


def weights(kind, rng):
    k = 4 if kind == "lstm" else 3
    b_shape = (4 * H,) if kind == "lstm" else (2, 3 * H)
    return dict(
        Wx=rng.normal(scale=0.5, size=(D, k * H)),
        Wh=rng.normal(scale=0.5, size=(H, k * H)),
        b=rng.normal(scale=0.3, size=b_shape),
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def keras_cell(kind, w):
    import keras

    cell = (keras.layers.LSTMCell if kind == "lstm" else keras.layers.GRUCell)(H, dtype="float64")
    cell.build((None, D))
    cell.set_weights([w["Wx"], w["Wh"], w["b"]])
    return cell


def test_sigmoid_is_stable_and_exact():
    x = np.array([-800.0, -3.0, 0.0, 2.0, 800.0])
    assert np.allclose(cells.sigmoid(x), 1 / (1 + np.exp(-np.clip(x, -50, 50))), atol=1e-15)
    assert np.isfinite(cells.sigmoid(x)).all()


def test_lstm_step_matches_keras_cell(rng):
    import keras

    w = weights("lstm", rng)
    x, h, c = rng.normal(size=(N, D)), rng.normal(size=(N, H)), rng.normal(size=(N, H))
    out, (kh, kc) = keras_cell("lstm", w)(x, [h, c])
    next_h, next_c, _ = cells.lstm_step_forward(x, h, c, **w)
    assert rel_error(next_h, keras.ops.convert_to_numpy(kh)) < 1e-7
    assert rel_error(next_c, keras.ops.convert_to_numpy(kc)) < 1e-7


def test_gru_step_matches_keras_cell(rng):
    import keras

    w = weights("gru", rng)
    cell = keras_cell("gru", w)
    assert cell.reset_after and cell.get_weights()[2].shape == (2, 3 * H)
    x, h = rng.normal(size=(N, D)), rng.normal(size=(N, H))
    out, _ = cell(x, [h])
    assert rel_error(cells.gru_step_forward(x, h, **w)[0], keras.ops.convert_to_numpy(out)) < 1e-7


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_sequence_matches_keras_layer(kind, rng):
    import keras

    w = weights(kind, rng)
    x, h0 = rng.normal(size=(N, T, D)), rng.normal(size=(N, H))
    Layer = keras.layers.LSTM if kind == "lstm" else keras.layers.GRU
    layer = Layer(H, return_sequences=True, dtype="float64")
    layer.build((None, T, D))
    layer.set_weights([w["Wx"], w["Wh"], w["b"]])
    state = [h0, np.zeros_like(h0)] if kind == "lstm" else [h0]
    expected = keras.ops.convert_to_numpy(layer(x, initial_state=state))
    h, _ = getattr(cells, f"{kind}_forward")(x, h0, **w)
    assert rel_error(h, expected) < 1e-7


def _check_grads(f, inputs, analytic, dout, names):
    for name, grad in zip(names, analytic):
        numeric = eval_numerical_gradient_array(
            lambda v, name=name: f(**{**inputs, name: v}), inputs[name].copy(), dout
        )
        assert grad.shape == inputs[name].shape, name
        assert rel_error(grad, numeric) < 1e-6, name


def test_lstm_step_backward(rng):
    inputs = dict(
        x=rng.normal(size=(N, D)),
        prev_h=rng.normal(size=(N, H)),
        prev_c=rng.normal(size=(N, H)),
        **weights("lstm", rng),
    )
    dh, dc = rng.normal(size=(N, H)), rng.normal(size=(N, H))
    _, _, cache = cells.lstm_step_forward(**inputs)
    grads = cells.lstm_step_backward(dh, dc, cache)
    names = ["x", "prev_h", "prev_c", "Wx", "Wh", "b"]
    # the loss is sum(next_h * dh) + sum(next_c * dc): check each output's share, then both
    for name, grad in zip(names, grads):

        def f(v, name=name):
            nh, nc, _ = cells.lstm_step_forward(**{**inputs, name: v})
            return np.stack([nh, nc])

        numeric = eval_numerical_gradient_array(f, inputs[name].copy(), np.stack([dh, dc]))
        assert rel_error(grad, numeric) < 1e-6, name


def test_gru_step_backward(rng):
    inputs = dict(x=rng.normal(size=(N, D)), prev_h=rng.normal(size=(N, H)), **weights("gru", rng))
    dh = rng.normal(size=(N, H))
    _, cache = cells.gru_step_forward(**inputs)
    _check_grads(
        lambda **kw: cells.gru_step_forward(**kw)[0],
        inputs,
        cells.gru_step_backward(dh, cache),
        dh,
        ["x", "prev_h", "Wx", "Wh", "b"],
    )


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_sequence_backward(kind, rng):
    forward, backward = getattr(cells, f"{kind}_forward"), getattr(cells, f"{kind}_backward")
    inputs = dict(x=rng.normal(size=(N, T, D)), h0=rng.normal(size=(N, H)), **weights(kind, rng))
    dh = rng.normal(size=(N, T, H))
    _, cache = forward(**inputs)
    _check_grads(lambda **kw: forward(**kw)[0], inputs, backward(dh, cache), dh, ["x", "h0", "Wx", "Wh", "b"])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_sequence_backward_matches_gradient_tape(kind, rng):
    import keras
    import tensorflow as tf

    w = weights(kind, rng)
    x, h0 = rng.normal(size=(N, T, D)), rng.normal(size=(N, H))
    dh = rng.normal(size=(N, T, H))
    Layer = keras.layers.LSTM if kind == "lstm" else keras.layers.GRU
    layer = Layer(H, return_sequences=True, dtype="float64")
    layer.build((None, T, D))
    layer.set_weights([w["Wx"], w["Wh"], w["b"]])
    xv, hv = tf.Variable(x), tf.Variable(h0)
    with tf.GradientTape() as tape:
        state = [hv, tf.zeros_like(hv)] if kind == "lstm" else [hv]
        loss = tf.reduce_sum(layer(xv, initial_state=state) * dh)
    ref = tape.gradient(loss, [xv, hv, *layer.trainable_variables])
    _, cache = getattr(cells, f"{kind}_forward")(x, h0, **w)
    for ours, theirs in zip(getattr(cells, f"{kind}_backward")(dh, cache), ref):
        assert rel_error(ours, np.asarray(theirs)) < 1e-9
