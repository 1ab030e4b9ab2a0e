"""LSTM and GRU cells in NumPy: forward/backward pairs in the style of CS231n.

Shapes: N batch, T time steps, D input size, H hidden size.
Weights use Keras's layouts, so ``layer.get_weights()`` copies straight in:

LSTM (``keras.layers.LSTMCell``), gates in the order **i, f, c, o**:
    Wx (D, 4H) = kernel, Wh (H, 4H) = recurrent_kernel, b (4H,) = bias
    a = x Wx + h Wh + b;  i, f, o = sigmoid(a_i, a_f, a_o);  g = tanh(a_c)
    c' = f * c + i * g;   h' = o * tanh(c')

GRU (``keras.layers.GRUCell(reset_after=True)``, the Keras default), gates **z, r, h**:
    Wx (D, 3H) = kernel, Wh (H, 3H) = recurrent_kernel, b (2, 3H) = bias
    (row 0 is added to x Wx, row 1 to h Wh: the reset gate acts *after* h Wh)
    u = x Wx + b[0];  v = h Wh + b[1]
    z = sigmoid(u_z + v_z);  r = sigmoid(u_r + v_r);  h~ = tanh(u_h + r * v_h)
    h' = z * h + (1 - z) * h~
"""

import numpy as np


def sigmoid(x):
    """Numerically stable logistic function."""
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


# ----------------------------------------------------------------------------- LSTM


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step.

    x (N, D), prev_h (N, H), prev_c (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,).
    Returns next_h (N, H), next_c (N, H), cache.
    """
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H : 2 * H]), sigmoid(a[:, 3 * H :])
    g = np.tanh(a[:, 2 * H : 3 * H])
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    cache = (x, prev_h, prev_c, Wx, Wh, i, f, g, o, tanh_c)
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache):
    """Backward pass of one LSTM step.

    dnext_h, dnext_c (N, H): upstream gradients of next_h and next_c.
    Returns dx (N, D), dprev_h (N, H), dprev_c (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,).
    """
    x, prev_h, prev_c, Wx, Wh, i, f, g, o, tanh_c = cache
    dc = dnext_c + dnext_h * o * (1.0 - tanh_c**2)  # c' reaches the loss directly and through h'
    da = np.concatenate(
        [
            dc * g * i * (1.0 - i),  # input gate
            dc * prev_c * f * (1.0 - f),  # forget gate
            dc * i * (1.0 - g**2),  # candidate
            dnext_h * tanh_c * o * (1.0 - o),  # output gate
        ],
        axis=1,
    )
    dprev_c = dc * f
    return da @ Wx.T, da @ Wh.T, dprev_c, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def lstm_forward(x, h0, Wx, Wh, b):
    """An LSTM over a whole sequence, starting from h0 and c0 = 0.

    x (N, T, D), h0 (N, H). Returns h (N, T, H) and the cache for lstm_backward.
    """
    N, T, _ = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=np.result_type(x, h0, Wx))
    prev_h, prev_c = h0, np.zeros_like(h0)
    caches = []
    for t in range(T):
        prev_h, prev_c, cache = lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        h[:, t] = prev_h
        caches.append(cache)
    return h, caches


def lstm_backward(dh, cache):
    """Backpropagation through time for lstm_forward.

    dh (N, T, H): upstream gradient of every hidden state.
    Returns dx (N, T, D), dh0 (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,).
    """
    N, T, H = dh.shape
    Wx = cache[0][3]
    dx = np.zeros((N, T, Wx.shape[0]), dtype=dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(cache[0][4]), np.zeros(4 * H, dtype=dh.dtype)
    dprev_h, dprev_c = np.zeros((N, H), dtype=dh.dtype), np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx[:, t], dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(dh[:, t] + dprev_h, dprev_c, cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


# ----------------------------------------------------------------------------- GRU


def gru_step_forward(x, prev_h, Wx, Wh, b):
    """One GRU step (Keras ``reset_after=True``).

    x (N, D), prev_h (N, H), Wx (D, 3H), Wh (H, 3H), b (2, 3H).
    Returns next_h (N, H) and cache.
    """
    H = prev_h.shape[1]
    u = x @ Wx + b[0]
    v = prev_h @ Wh + b[1]
    z = sigmoid(u[:, :H] + v[:, :H])
    r = sigmoid(u[:, H : 2 * H] + v[:, H : 2 * H])
    h_tilde = np.tanh(u[:, 2 * H :] + r * v[:, 2 * H :])
    next_h = z * prev_h + (1.0 - z) * h_tilde
    cache = (x, prev_h, Wx, Wh, z, r, h_tilde, v[:, 2 * H :])
    return next_h, cache


def gru_step_backward(dnext_h, cache):
    """Backward pass of one GRU step.

    dnext_h (N, H). Returns dx (N, D), dprev_h (N, H), dWx (D, 3H), dWh (H, 3H), db (2, 3H).
    """
    x, prev_h, Wx, Wh, z, r, h_tilde, v_h = cache
    da_h = dnext_h * (1.0 - z) * (1.0 - h_tilde**2)
    da_z = dnext_h * (prev_h - h_tilde) * z * (1.0 - z)
    da_r = da_h * v_h * r * (1.0 - r)
    du = np.concatenate([da_z, da_r, da_h], axis=1)  # gradient of x Wx + b[0]
    dv = np.concatenate([da_z, da_r, da_h * r], axis=1)  # of h Wh + b[1]: r scales only the h part
    dprev_h = dnext_h * z + dv @ Wh.T
    db = np.stack([du.sum(axis=0), dv.sum(axis=0)])
    return du @ Wx.T, dprev_h, x.T @ du, prev_h.T @ dv, db


def gru_forward(x, h0, Wx, Wh, b):
    """A GRU over a whole sequence. x (N, T, D), h0 (N, H). Returns h (N, T, H), cache."""
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=np.result_type(x, h0, Wx))
    prev_h, caches = h0, []
    for t in range(T):
        prev_h, cache = gru_step_forward(x[:, t], prev_h, Wx, Wh, b)
        h[:, t] = prev_h
        caches.append(cache)
    return h, caches


def gru_backward(dh, cache):
    """Backpropagation through time for gru_forward.

    dh (N, T, H). Returns dx (N, T, D), dh0 (N, H), dWx (D, 3H), dWh (H, 3H), db (2, 3H).
    """
    N, T, H = dh.shape
    Wx, Wh = cache[0][2], cache[0][3]
    dx = np.zeros((N, T, Wx.shape[0]), dtype=dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros((2, 3 * H), dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx[:, t], dprev_h, dWx_t, dWh_t, db_t = gru_step_backward(dh[:, t] + dprev_h, cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db
