import matplotlib
import pytest

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from helpers.viz import draw_unrolled_rnn, plot_loss_curves  # noqa: E402


def test_unrolled_rnn_draws_a_cell_per_step():
    for steps in (2, 5):
        ax = draw_unrolled_rnn(steps)
        boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
        arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
        assert len(boxes) == 3 + 1 + 3 * steps  # folded cell, h0, then x_t, cell, h_t per step
        assert len(arrows) == 3 + 3 * steps
        labels = {t.get_text() for t in ax.texts}
        assert f"$h_{steps}$" in labels and f"$x_{steps + 1}$" not in labels
        plt.close("all")


def test_loss_curves_plot_every_series_and_baseline():
    ax = plot_loss_curves({"train": [3, 2, 1], "val": [3.1, 2.2, 1.5]}, baselines={"unigram": 2.9})
    assert [line.get_label() for line in ax.get_lines()] == ["train", "val", "unigram"]
    assert list(ax.get_lines()[0].get_ydata()) == [3, 2, 1]
    plt.close("all")


def test_cell_diagrams_show_every_gate():
    from helpers.viz import draw_gru_cell, draw_lstm_cell

    for draw, gates in (
        (draw_lstm_cell, ["f: σ", "i: σ", "g: tanh", "o: σ"]),
        (draw_gru_cell, ["z: σ", "r: σ", "h̃: tanh"]),
    ):
        ax = draw()
        labels = [t.get_text() for t in ax.texts]
        assert all(g in labels for g in gates), labels
        assert "$h_t$" in labels
        plt.close("all")


def test_beam_tree_greys_pruned_nodes_and_marks_the_best_path():
    from helpers.viz import BEAM_COLOURS, draw_beam_tree

    tree = [
        {"id": 0, "parent": None, "step": 1, "token": 2, "log_prob": -0.7, "status": "live"},
        {"id": 1, "parent": None, "step": 1, "token": 3, "log_prob": -0.9, "status": "live"},
        {"id": 2, "parent": None, "step": 1, "token": 0, "log_prob": -2.3, "status": "pruned"},
        {"id": 3, "parent": 1, "step": 2, "token": 0, "log_prob": -1.0, "status": "finished", "score": -1.0},
        {"id": 4, "parent": 0, "step": 2, "token": 0, "log_prob": -1.6, "status": "finished", "score": -1.6},
    ]
    ax = draw_beam_tree(tree, ["<end>", "<start>", "a", "the"])
    labels = [t.get_text() for t in ax.texts]
    assert {"a\n-0.70", "the\n-0.90", "<end>\n-1.00", "<end>\n-2.30"} <= set(labels)
    grey = [t.get_text() for t in ax.texts if t.get_color() == "#808080"]
    assert grey == ["<end>\n-2.30"]
    thick = [line for line in ax.get_lines() if line.get_linewidth() == 2.5 and len(line.get_xdata()) == 2]
    assert len(thick) == 2  # <start> -> "the" -> <end>: the best finished caption, not the first
    assert [tuple(line.get_ydata()) for line in thick] == [(0, -1), (-1, 0)]
    assert BEAM_COLOURS["pruned"] in [line.get_color() for line in ax.get_lines()]
    plt.close("all")


def test_attention_words_one_panel_per_word_and_upsampling():
    import numpy as np

    from helpers.viz import plot_attention_words, upsample_attention

    attention = np.zeros((4, 4))
    attention[3, 0] = 1.0  # bottom-left cell
    up = upsample_attention(attention, (32, 48))
    assert up.shape == (32, 48) and up.max() == 1.0
    y, x = np.unravel_index(np.argmax(up), up.shape)
    assert y >= 24 and x < 12  # the peak stays in the bottom-left cell
    flat = upsample_attention(np.full((4, 4), 1 / 16), (32, 48), vmax=1.0)
    assert np.allclose(flat, 1 / 16, atol=1e-6)  # on a shared scale a flat map stays faint
    image = np.zeros((32, 48, 3), np.uint8)
    fig = plot_attention_words(image, ["a", "red", "star"], [attention] * 3, cols=2)
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == ["a", "red", "star"] and len(fig.axes) == 4
    # one colour scale for every panel: a flat map beside a peaked one is drawn faint, not stretched
    fig = plot_attention_words(image, ["a", "star"], [np.full((4, 4), 1 / 16), attention], betas=[0.25, 0.9])
    overlays = [ax.get_images()[1].get_array() for ax in fig.axes[:2]]
    assert np.allclose(overlays[0], 1 / 16, atol=1e-6) and overlays[1].max() == 1.0
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a  (β 0.25)", "star  (β 0.90)"]
    with pytest.raises(ValueError, match="3 words but 2 attention maps"):
        plot_attention_words(image, ["a", "red", "star"], [attention] * 2)
    plt.close("all")


def test_reading_diff_marks_wrong_extra_and_missing_characters():
    from helpers.viz import diff_colours

    red = "#d00000"
    assert diff_colours("dog", "dog") == [("d", "black"), ("o", "black"), ("g", "black")]
    assert diff_colours("dog", "dug") == [("d", "black"), ("u", red), ("g", "black")]
    assert diff_colours("dog", "dogs") == [("d", "black"), ("o", "black"), ("g", "black"), ("s", red)]
    assert diff_colours("dogs", "dog")[-1] == ("_", red)
    assert diff_colours("12", "") == [("_", red), ("_", red)]


def test_ctc_alignment_labels_every_frame_and_returns_the_greedy_reading():
    import numpy as np

    from helpers.crnn import CHARSET, ctc_greedy_decode, decode_classes
    from helpers.viz import BLANK_GREY, plot_ctc_alignment

    rng = np.random.default_rng(0)
    path = [0, 1, 1, 0, 1, 2, 0, 0]  # - a a - a b - -: reads "aab"
    log_probs = np.log(np.full((8, len(CHARSET) + 1), 0.01))
    log_probs[np.arange(8), path] = 0.0
    _, ax = plt.subplots()
    reading = plot_ctc_alignment(ax, rng.random((32, 64)), log_probs, CHARSET, truth="aab")
    assert reading == "aab" == decode_classes(ctc_greedy_decode(log_probs))
    labels = [(t.get_text(), t.get_color()) for t in ax.texts]
    assert len(labels) == 8
    assert [c for _, c in labels].count(BLANK_GREY) == 5  # four blanks and the merged second "a"
    plt.close("all")
