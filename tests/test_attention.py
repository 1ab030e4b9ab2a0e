"""helpers.attention: additive attention against NumPy, the step function against teacher
forcing, the doubly stochastic penalty, and the grounding score."""

import numpy as np
import pytest
import tensorflow as tf

from helpers.attention import (
    AdditiveAttention,
    coordinate_channels,
    doubly_stochastic_penalty,
    grounding,
    peak_in_box,
)


def numpy_attention(a, h, W_a, b, W_h, v):
    """The textbook formula, one location at a time: e_i = v . tanh(W_a a_i + b + W_h h)."""
    N, L, _ = a.shape
    e = np.array([[v[:, 0] @ np.tanh(a[n, i] @ W_a + b + h[n] @ W_h) for i in range(L)] for n in range(N)])
    alpha = np.exp(e - e.max(1, keepdims=True))
    alpha /= alpha.sum(1, keepdims=True)
    return np.einsum("nl,nlf->nf", alpha, a), alpha


def test_additive_attention_equals_the_formula():
    rng = np.random.default_rng(0)
    a, h = rng.normal(size=(3, 7, 5)).astype("float32"), rng.normal(size=(3, 4)).astype("float32")
    layer = AdditiveAttention(6)
    z, alpha = layer(a, layer.keys(a), h)
    W_a, b = layer.W_a.get_weights()
    (W_h,), (v,) = layer.W_h.get_weights(), layer.v.get_weights()
    z_ref, alpha_ref = numpy_attention(a.astype(float), h.astype(float), W_a, b, W_h, v)
    assert np.allclose(alpha, alpha_ref, atol=1e-6) and np.allclose(z, z_ref, atol=1e-5)
    assert np.allclose(np.sum(alpha, axis=1), 1.0, atol=1e-6)


@pytest.fixture(scope="module", params=[False, True], ids=["image only through attention", "paper decoder"])
def model(request, tiny_attention):
    tf.keras.utils.set_random_seed(0)
    m = tiny_attention(penalty=1.0, init_from_mean=request.param, context_into_lstm=request.param)
    images = tf.constant(np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)), tf.float32)
    m(images, tf.constant([0, 1]), tf.constant([[1, 5, 6, 2], [1, 7, 2, 0]]))
    return m, images


def test_step_function_replays_teacher_forcing(model):
    # decoding word by word must see exactly what training saw: same logits, same attention
    m, images = model
    tokens = tf.constant([[1, 5, 6, 2, 0], [1, 7, 8, 9, 2]])
    logits, alphas = m.teacher_forced(images, tf.constant([0, 1]), tokens)
    state = m.initial_state(images)
    for t in range(4):
        log_probs, state = m.step(tokens[:, t], state)
        assert np.allclose(log_probs, tf.nn.log_softmax(logits[:, t]), atol=1e-5)
        assert np.allclose(state["alpha"], alphas[:, t], atol=1e-6)
    assert alphas.shape == (2, 4, 16)  # 32 px / 2**3 blocks = a 4 x 4 grid


def test_teacher_forcing_run_on_its_own_is_compiled_and_gives_what_it_gives_op_by_op(model):
    # validation and grounding call it outside any graph: compiled there, it must not change a number
    m, images = model
    tokens, index = tf.constant([[1, 5, 6, 2, 0], [1, 7, 8, 9, 2]]), tf.constant([0, 1])
    compiled = m.teacher_forced(images, index, tokens)
    op_by_op = type(m).teacher_forced.__wrapped__(m, images, index, tokens)
    for ours, reference in zip(compiled, op_by_op):
        np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_each_model_has_its_own_compiled_pass_which_does_not_keep_it_alive(tiny_attention):
    # a model's first pass builds its weights, after other models' passes too (one shared
    # tf.function refuses: "creating variables on a non-first call"); and rerunning notebook
    # 06's training cell must free the models it trained before
    import gc
    import weakref

    images = tf.constant(np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)), tf.float32)
    index, tokens = tf.constant([0, 1]), tf.constant([[1, 5, 6, 2], [1, 7, 2, 0]])
    tiny_attention().teacher_forced(images, index, tokens)
    m = tiny_attention()
    m.teacher_forced(images, index, tokens)  # unbuilt: builds and traces
    gone = [weakref.ref(m), weakref.ref(m.cell.kernel)]  # the model, and the weights its trace captured
    del m
    gc.collect()
    assert [ref() for ref in gone] == [None, None]


def test_the_lstm_reads_where_each_step_looked_in_the_order_of_the_flattened_features(tiny_attention):
    from keras import ops

    from helpers.attention import cell_coordinates, with_coordinates

    grid = ops.convert_to_numpy(with_coordinates(np.zeros((1, 4, 4, 3), "float32")))[0, ..., -2:]
    np.testing.assert_array_equal(cell_coordinates(16), grid.reshape(16, 2))  # cell i of alpha is feature i
    with_where, without = tiny_attention(), tiny_attention(where_into_lstm=False)
    images = tf.constant(np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)), tf.float32)
    for m in (with_where, without):
        m(images, tf.constant([0, 1]), tf.constant([[1, 5, 2], [1, 7, 2]]))
    # the LSTM's input: the word's embedding, and with the option two more numbers, (x, y)
    assert with_where.cell.kernel.shape[0] == without.cell.kernel.shape[0] + 2 == with_where.embed_dim + 2


def test_the_penalty_reaches_the_losses_only_when_switched_on(model, tiny_attention):
    m, images = model
    tokens = tf.constant([[1, 5, 6, 2], [1, 7, 2, 0]])
    m(images, tf.constant([0, 1]), tokens)
    _, alphas = m.teacher_forced(images, tf.constant([0, 1]), tokens)
    assert len(m.losses) == 1
    assert float(m.losses[0]) == pytest.approx(float(doubly_stochastic_penalty(alphas, tokens[:, 1:])), rel=1e-6)
    off = tiny_attention()
    off(images, tf.constant([0, 1]), tokens)
    assert off.losses == []


def test_doubly_stochastic_penalty_ignores_padding():
    rng = np.random.default_rng(2)
    alphas = rng.dirichlet(np.ones(5), size=(3, 4)).astype("float32")  # (C=3, T'=4, L=5)
    targets = np.array([[4, 5, 2, 0], [4, 2, 0, 0], [6, 7, 8, 2]])
    expected = np.mean([np.sum((1 - alphas[c][targets[c] != 0].sum(0)) ** 2) for c in range(3)])
    assert float(doubly_stochastic_penalty(tf.constant(alphas), tf.constant(targets))) == pytest.approx(
        expected, rel=1e-6
    )


def test_coordinates_run_left_to_right_and_top_to_bottom():
    c = coordinate_channels(3)
    assert c.shape == (3, 3, 2)
    assert list(c[0, :, 0]) == [-1, 0, 1] and list(c[:, 0, 1]) == [-1, 0, 1]


def test_peak_in_box_and_the_uniform_baseline():
    attention = np.zeros((4, 4))
    attention[1, 3] = 1.0  # row 1, column 3: x in [72, 96), y in [24, 48) on a 96 px image
    assert peak_in_box(attention, [70, 20, 96, 50], (96, 96))
    assert not peak_in_box(attention, [0, 0, 48, 48], (96, 96))
    objects = [[70, 20, 96, 50], [0, 0, 48, 48]]
    scores = grounding([(attention, [70, 20, 96, 50], objects), (attention, [0, 0, 48, 48], objects)], (96, 96))
    assert scores["grounding"] == 0.5
    assert scores["grounding_uniform"] == pytest.approx((26 * 30 + 48 * 48) / 2 / 96**2)
    assert scores["grounding_random_object"] == 0.5  # two objects apart: the named one half of the time
    with pytest.raises(ValueError, match="at least one"):
        grounding([], (96, 96))


def test_attention_mass_in_a_box_against_tensorflow_resize():
    import tensorflow as tf

    from helpers.attention import mass_in_box

    rng = np.random.default_rng(0)
    attention = rng.dirichlet(np.ones(36)).reshape(6, 6)
    # bilinear with half-pixel centres, as OpenCV's INTER_LINEAR
    up = tf.image.resize(attention[None, :, :, None], (96, 80), method="bilinear").numpy()[0, :, :, 0]
    for box in ([0, 0, 80, 96], [10, 5, 47, 60], [60, 70, 80, 96]):
        x0, y0, x1, y1 = box
        assert mass_in_box(attention, box, (96, 80)) == pytest.approx(up[y0:y1, x0:x1].sum() / up.sum(), abs=1e-5)
    assert mass_in_box(np.full((6, 6), 1 / 36), [0, 0, 40, 48], (96, 80)) == pytest.approx(0.25)


def test_the_random_object_baseline_against_sampling():
    from helpers.attention import random_object_share

    objects = [[0, 0, 40, 40], [20, 20, 60, 50], [70, 10, 90, 30]]
    rng = np.random.default_rng(1)
    picked = rng.integers(0, 3, 200_000)
    boxes = np.array(objects, float)[picked]
    points = boxes[:, :2] + rng.uniform(size=(200_000, 2)) * (boxes[:, 2:] - boxes[:, :2])
    for box in objects:
        inside = (points[:, 0] >= box[0]) & (points[:, 0] < box[2]) & (points[:, 1] >= box[1]) & (points[:, 1] < box[3])
        assert random_object_share(box, objects, (96, 96)) == pytest.approx(inside.mean(), abs=0.005)


def test_the_image_reaches_words_only_through_attention_and_where_it_looked(tiny_attention):
    # no context (gate beta = 0) and the zero start state: the first word can depend on the image
    # only through where the map looked (where_into_lstm), and with uniform maps (v = 0) not at all
    images = tf.constant(np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 3)), tf.float32)

    def first_words(where, uniform):
        tf.keras.utils.set_random_seed(3)
        m = tiny_attention(where_into_lstm=where)
        m(images, tf.constant([0, 1]), tf.constant([[1, 5, 2], [1, 5, 2]]))
        state = m.initial_state(images)
        assert np.all(state["h"].numpy() == 0) and np.all(state["c"].numpy() == 0)
        gate = m.gate.get_weights()
        m.gate.set_weights([np.zeros_like(w) for w in gate[:1]] + [np.full_like(gate[1], -1e4)])
        if uniform:
            m.attention.v.set_weights([np.zeros_like(w) for w in m.attention.v.get_weights()])
        log_probs, _ = m.step(tf.constant([1, 1]), state)
        return log_probs.numpy()

    for where, uniform in ((False, False), (True, True)):
        same = first_words(where, uniform)
        assert np.allclose(same[0], same[1], atol=1e-6), (where, uniform)
    apart = first_words(True, False)  # the maps differ between the images: so does where they looked
    assert not np.allclose(apart[0], apart[1], atol=1e-6)


class LooksAt:
    """A stand-in attention model whose every map peaks at one cell of a 12 x 12 grid."""

    def __init__(self, cell):
        self.cell, self.calls = cell, []

    def teacher_forced(self, inputs, image_index, tokens):
        self.calls.append((len(inputs), list(image_index)))
        alphas = np.zeros((len(tokens), tokens.shape[1] - 1, 144))
        alphas[..., self.cell] = 1.0
        return None, alphas


def test_grounding_scores_teacher_force_every_reference_and_score_only_boxed_words():
    import pandas as pd

    from helpers.attention import grounding_scores
    from helpers.text import Vocabulary

    captions = pd.DataFrame(
        {
            "image": ["a.jpg", "a.jpg", "b.jpg", "c.jpg"],
            "caption": ["a red star", "a star on the left", "a blue ring", "a green ring"],
        }
    )
    vocab = Vocabulary(captions.caption)
    boxes = {
        "a.jpg": [{"word": "star", "box": [0, 0, 48, 48]}, {"word": "red", "box": [0, 0, 48, 48]}],
        "b.jpg": [{"word": "ring", "box": [0, 0, 48, 48]}],
    }  # c.jpg is not asked for
    inputs = np.zeros((2, 1))
    top_left = LooksAt(cell=0)
    hit = grounding_scores(top_left, inputs, ["a.jpg", "b.jpg"], captions, vocab, boxes, (96, 96), batch_size=1)
    assert hit["grounding"] == 1.0 and hit["grounding_uniform"] == pytest.approx(0.25)  # each box: a quarter
    assert hit["grounding_random_object"] == 1.0  # a's two words share one box
    assert top_left.calls == [(1, [0, 0]), (1, [0])]  # image by image, all of a's captions with a
    miss = grounding_scores(LooksAt(cell=143), inputs, ["a.jpg", "b.jpg"], captions, vocab, boxes, (96, 96))
    assert miss["grounding"] == 0.0 and miss["attention_correctness"] == 0.0
    # 4 boxed words: "red" and "star" in a's first caption, "star" in its second, "ring" in b's
    half = LooksAt(cell=0)
    half.teacher_forced = lambda inputs, image_index, tokens: (
        None,
        np.where(
            (tokens[:, 1:, None] == vocab.token_to_id["star"]) & (np.arange(144) == 143),
            1.0,
            np.where((tokens[:, 1:, None] != vocab.token_to_id["star"]) & (np.arange(144) == 0), 1.0, 0.0),
        ),
    )
    assert grounding_scores(half, inputs, ["a.jpg", "b.jpg"], captions, vocab, boxes, (96, 96))["grounding"] == 0.5
