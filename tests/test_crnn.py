"""helpers.crnn: rendering, CTC (loss, greedy and prefix beam decoding), each against an
independent reference: brute force over every alignment, TensorFlow's CTC loss. (Its error
rates are tested with the other metrics, in test_metrics.py.)"""

import itertools

import numpy as np
import pytest

from helpers import crnn
from helpers.crnn import BLANK, CHARSET


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def collapse(path):
    """The CTC many-to-one map: merge repeats, then drop blanks."""
    return tuple(c for i, c in enumerate(path) if c != BLANK and (i == 0 or c != path[i - 1]))


def brute_force(log_probs):
    """{labelling: log p} summed over every one of the C**T alignments."""
    T, C = log_probs.shape
    totals = {}
    for path in itertools.product(range(C), repeat=T):
        p = np.exp(sum(log_probs[t, c] for t, c in enumerate(path)))
        totals[collapse(path)] = totals.get(collapse(path), 0.0) + p
    return {k: np.log(v) for k, v in totals.items()}


# ----------------------------------------------------------------------------- greedy


def frames(ids, C=5):
    """Log-probs whose per-frame argmax is ``ids``."""
    lp = np.full((len(ids), C), np.log(0.1 / (C - 1)))
    lp[np.arange(len(ids)), ids] = np.log(0.9)
    return lp


@pytest.mark.parametrize(
    "path,expected",
    [
        ([0, 1, 1, 0, 1, 2, 2, 0], [1, 1, 2]),  # a blank separates the two 1s; 2 2 merges
        ([1, 1, 1, 1], [1]),
        ([0, 0, 0], []),
        ([3, 0, 3, 3, 0, 0, 3], [3, 3, 3]),
        ([2, 4, 2, 4], [2, 4, 2, 4]),
    ],
)
def test_greedy_decoding_of_hand_made_frames(path, expected):
    assert crnn.ctc_greedy_decode(frames(path)) == expected
    assert collapse(path) == tuple(expected)  # the reference map agrees


def test_greedy_decoding_works_on_a_batch():
    batch = np.stack([frames([0, 1, 1, 2]), frames([4, 0, 4, 0])])
    assert crnn.ctc_greedy_decode(batch) == [[1, 2], [4, 4]]


# ----------------------------------------------------------------------------- CTC loss


@pytest.mark.parametrize("label", [[1], [1, 2], [1, 1], [2, 1, 2], []])
def test_ctc_forward_equals_the_sum_over_all_alignments(label):
    lp = log_softmax(np.random.default_rng(len(label)).normal(size=(5, 3)) * 2)
    loss, alpha = crnn.ctc_forward(lp, label)
    assert alpha.shape == (5, 2 * len(label) + 1)
    np.testing.assert_allclose(loss, -brute_force(lp).get(tuple(label), -np.inf), rtol=1e-12)


def test_ctc_forward_and_the_keras_ctc_loss_agree():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 12, 6)).astype(np.float32) * 3
    labels = [[1, 2, 3], [4, 4], [5], [1, 2, 1, 2, 1]]
    padded = np.zeros((4, 5), np.int32)
    for row, label in zip(padded, labels):
        row[: len(label)] = label
    lengths = np.array([len(label) for label in labels], np.int32)
    import keras

    per_item = keras.ops.convert_to_numpy(keras.ops.ctc_loss(padded, logits, lengths, np.full(4, 12), mask_index=0))
    ours = [crnn.ctc_forward(log_softmax(logits[i].astype(np.float64)), label)[0] for i, label in enumerate(labels)]
    np.testing.assert_allclose(per_item, ours, rtol=1e-5)
    mean = float(keras.ops.convert_to_numpy(crnn.ctc_loss(padded, lengths, logits)))
    np.testing.assert_allclose(mean, np.mean(ours), rtol=1e-5)


# ----------------------------------------------------------------------------- prefix beam search


@pytest.mark.parametrize("seed", range(6))
def test_wide_prefix_beam_search_is_exact(seed):
    lp = log_softmax(np.random.default_rng(seed).normal(size=(5, 3)) * 1.5)
    exact = sorted(brute_force(lp).items(), key=lambda kv: -kv[1])
    found = crnn.ctc_prefix_beam_search(lp, beam_width=len(exact), prune=0)
    assert len(found) == len(exact)
    for (ids, logp), (labelling, ref) in zip(found, exact):
        assert tuple(ids) == labelling
        np.testing.assert_allclose(logp, ref, rtol=1e-10)


@pytest.mark.parametrize("seed", range(20))
def test_narrow_prefix_beam_finds_the_most_probable_labelling_of_a_small_case(seed):
    # peaky frames like a trained model's; the best labelling survives a beam of 4, its
    # probability a lower bound (alignments through pruned prefixes are lost)
    lp = log_softmax(np.random.default_rng(100 + seed).normal(size=(6, 3)) * 4)
    best = max(brute_force(lp).items(), key=lambda kv: kv[1])
    (ids, logp), *_ = crnn.ctc_prefix_beam_search(lp, beam_width=4, prune=0)
    assert tuple(ids) == best[0] and best[1] - 0.01 < logp <= best[1] + 1e-12


def test_prefix_beam_can_beat_the_best_path():
    # classes blank, a: the best single path is "blank blank" (0.36), but "a" has three
    # paths (a a, a blank, blank a) worth 0.16 + 0.24 + 0.24 = 0.64 together
    lp = np.log([[0.6, 0.4], [0.6, 0.4]])
    assert crnn.ctc_greedy_decode(lp) == []
    (ids, logp), *_ = crnn.ctc_prefix_beam_search(lp, beam_width=2, prune=0)
    assert ids == [1] and np.exp(logp) == pytest.approx(0.64)
    assert max(brute_force(lp).items(), key=lambda kv: kv[1])[0] == (1,)


def test_bad_beam_width_is_named():
    with pytest.raises(ValueError, match="beam_width must be at least 1, got 0"):
        crnn.ctc_prefix_beam_search(np.zeros((3, 4)), beam_width=0)


# ----------------------------------------------------------------------------- error rates


# ----------------------------------------------------------------------------- data


def test_rendering_is_deterministic_per_seed_and_index():
    words = ["dog", "ball", "grass"]
    a_images, a_texts = crnn.make_text_lines(6, seed=1, words=words)
    b_images, b_texts = crnn.make_text_lines(6, seed=1, words=words)
    np.testing.assert_array_equal(a_images, b_images)
    assert a_texts == b_texts
    # line i depends on (seed, i) only: a slice of a longer set is the same lines
    c_images, c_texts = crnn.make_text_lines(3, seed=1, words=words, start=3)
    np.testing.assert_array_equal(c_images, a_images[3:])
    d_images, _ = crnn.make_text_lines(6, seed=2, words=words)
    assert not np.array_equal(d_images, a_images)
    assert a_images.shape == (6, crnn.HEIGHT, crnn.WIDTH) and 0 <= a_images.min() and a_images.max() <= 1
    assert all(t in words or t.isdigit() for t in a_texts)


def test_a_line_has_dark_ink_where_the_text_is():
    clean = crnn.render_line("hello", jitter=0, font="simplex")
    assert clean.max() == 1.0 and clean.min() < 0.1  # white background, black ink
    ink_columns = np.flatnonzero((clean < 0.5).any(0))
    assert 10 < len(ink_columns) < crnn.WIDTH
    longer = crnn.render_line("hellohellohello", jitter=0, font="simplex")
    assert (longer < 0.5).any(0).sum() > len(ink_columns)


def test_unknown_characters_and_empty_lines_are_named():
    with pytest.raises(ValueError, match="character 'A' in 'Ab' is not in the CRNN's character set"):
        crnn.render_line("Ab")
    with pytest.raises(ValueError, match="empty text line"):
        crnn.pad_labels(["abc", ""])
    labels, lengths = crnn.pad_labels(["ab", "c"])
    assert labels.tolist() == [[1, 2], [3, 0]] and lengths.tolist() == [2, 1]
    assert crnn.decode_classes(crnn.encode_text("a9z")) == "a9z"
    assert CHARSET[crnn.encode_text("0")[0] - 1] == "0"


def test_lines_are_rendered_once_and_a_broken_cache_is_rendered_again(tmp_path, capsys):
    sizes = {"train": 8, "val": 2, "test": 3}
    first = crnn.load_text_lines(tmp_path, sizes=sizes, progress=False)
    (cached,) = tmp_path.glob("*.npz")
    assert [len(first[s][1]) for s in sizes] == [8, 2, 3] and first["train"][0].dtype == np.uint8
    again = crnn.load_text_lines(tmp_path, sizes=sizes, progress=False)
    np.testing.assert_array_equal(again["test"][0], first["test"][0])
    assert again["test"][1] == first["test"][1]
    assert not np.array_equal(first["train"][0][:3], first["test"][0])
    cached.write_bytes(cached.read_bytes()[:100])  # a torn file, as if written by something else
    fixed = crnn.load_text_lines(tmp_path, sizes=sizes, progress=False)
    assert "is unreadable" in capsys.readouterr().out
    np.testing.assert_array_equal(fixed["val"][0], first["val"][0])
    assert not list(tmp_path.glob(".*tmp*"))


# ----------------------------------------------------------------------------- the model


def test_the_crnn_reads_columns_and_its_receptive_field_is_what_the_layers_say():
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = crnn.build_crnn(hidden=16, filters=(8, 8, 8, 8))
    x = tf.constant(np.random.default_rng(0).random((2, crnn.HEIGHT, crnn.WIDTH, 1)), tf.float32)
    assert model(x).shape == (2, crnn.WIDTH // 4, crnn.NUM_CLASSES)
    height, width = crnn.receptive_field(model)
    # which input pixels can change the CNN's feature of column 16 (before the LSTM mixes columns)?
    cnn = keras.Model(model.input, model.get_layer("collapse_height").output)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(cnn(x)[:, 16] ** 2)
    reach = np.flatnonzero(np.abs(tape.gradient(y, x).numpy()).sum(axis=(0, 1, 3)) > 0)
    assert height >= crnn.HEIGHT  # every column sees the whole line's height
    assert reach.max() - reach.min() + 1 <= width  # nothing outside the computed field
    assert reach.max() - reach.min() + 1 >= width - 4  # and it is nearly all used
