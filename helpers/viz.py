"""Figures the notebooks share (matplotlib only)."""

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch


def _box(ax, x, y, text, color, w=0.8, h=0.5):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc=color, ec="black", lw=1.2))
    ax.text(x, y, text, ha="center", va="center", fontsize=12)


def _arrow(ax, start, end, color="black", **kw):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=color, lw=1.4, **kw))


def draw_unrolled_rnn(steps=4, ax=None):
    """The folded RNN (left) and the same cell unrolled over ``steps`` time steps (right).

    Returns the axes. Inputs x_t are drawn in blue, hidden states h_t in orange and the
    shared weights (W_x, W_h, b) on every copy of the cell, to make the point that
    unrolling copies the *same* parameters.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(2.2 * steps + 3, 3.2))
    ax.set_xlim(-0.8, 2.2 * steps + 2.2)
    ax.set_ylim(-1.3, 2.4)
    ax.set_aspect("equal")
    ax.axis("off")
    # folded
    _box(ax, 0.4, 0.6, "RNN\ncell", "#fde0c5")
    _box(ax, 0.4, -0.8, "$x_t$", "#cfe2f3", h=0.4)
    _box(ax, 0.4, 1.95, "$h_t$", "#f9cb9c", h=0.4)
    _arrow(ax, (0.4, -0.6), (0.4, 0.3))
    _arrow(ax, (0.4, 0.9), (0.4, 1.75))
    _arrow(ax, (0.85, 0.75), (0.85, 0.45), connectionstyle="arc3,rad=-2.5", color="#c0504d")
    ax.text(1.45, 0.6, "=", fontsize=22, ha="center", va="center")
    # unrolled
    x0 = 2.6
    _box(ax, x0 - 0.3, 0.6, "$h_0$", "#f9cb9c", w=0.55, h=0.4)
    for t in range(steps):
        x = x0 + 0.9 + 2.2 * t
        _box(ax, x, 0.6, "$W_x, W_h, b$", "#fde0c5", w=1.3)
        _box(ax, x, -0.8, f"$x_{t + 1}$", "#cfe2f3", h=0.4)
        _box(ax, x, 1.95, f"$h_{t + 1}$", "#f9cb9c", h=0.4)
        _arrow(ax, (x, -0.6), (x, 0.3))
        _arrow(ax, (x, 0.9), (x, 1.75))
        _arrow(ax, (x - 2.2 + 0.7 if t else x0 - 0.02, 0.6), (x - 0.7, 0.6), color="#c0504d")
    ax.set_title(
        "An RNN is one cell applied at every step; the hidden state (red arrows) carries the past", fontsize=11
    )
    return ax


def plot_loss_curves(history, ax=None, baselines=None, ylabel="loss"):
    """Training curves from ``{"name": [values per epoch or step], ...}``.

    baselines: optional ``{"label": value}`` drawn as dashed horizontal lines.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for name, values in history.items():
        ax.plot(range(1, len(values) + 1), values, marker="o" if len(values) < 30 else None, label=name)
    for i, (label, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{i + 3}", label=label)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def _op(ax, x, y, symbol, color="#ffffff"):
    ax.add_patch(plt.Circle((x, y), 0.22, fc=color, ec="black", lw=1.2, zorder=3))
    ax.text(x, y, symbol, ha="center", va="center", fontsize=12 if len(symbol) == 1 else 7, zorder=4)


def _line(ax, points, color="black", arrow=True):
    xs, ys = zip(*points)
    ax.plot(xs[:-1] + (xs[-1],), ys, color=color, lw=1.4, zorder=1)
    if arrow:
        _arrow(ax, points[-2], points[-1], color=color)


def _canvas(ax, title):
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.6))
    ax.set_xlim(0, 10)
    ax.set_ylim(0.2, 6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    return ax


def draw_lstm_cell(ax=None):
    """Schematic LSTM cell: the cell-state highway on top, the four gates below.

    Gate colours follow Keras's order i, f, c (candidate g), o. Returns the axes.
    """
    ax = _canvas(ax, r"LSTM:  $c_t = f \odot c_{t-1} + i \odot g, \quad h_t = o \odot \tanh(c_t)$")
    gates = {
        "f": (2.6, "σ", "#f4cccc"),
        "i": (4.2, "σ", "#d9ead3"),
        "g": (5.4, "tanh", "#fff2cc"),
        "o": (7.0, "σ", "#cfe2f3"),
    }
    _line(ax, [(0.4, 1.0), (7.0, 1.0)], arrow=False)  # [h_{t-1}, x_t] feeds every gate
    ax.text(0.4, 0.55, "$h_{t-1}$, $x_t$", fontsize=11)
    for name, (x, act, color) in gates.items():
        _arrow(ax, (x, 1.0), (x, 1.75))
        _box(ax, x, 2.0, f"{name}: {act}", color, w=0.95, h=0.45)
    _line(ax, [(0.4, 5.0), (2.38, 5.0)])  # the cell-state highway
    ax.text(0.4, 5.25, "$c_{t-1}$", fontsize=11)
    _op(ax, 2.6, 5.0, "×")
    _line(ax, [(2.6, 2.25), (2.6, 4.78)])
    _line(ax, [(2.82, 5.0), (4.58, 5.0)])
    _op(ax, 4.8, 3.6, "×")
    _line(ax, [(4.2, 2.25), (4.2, 3.6), (4.58, 3.6)])
    _line(ax, [(5.4, 2.25), (5.4, 3.6), (5.02, 3.6)])
    _op(ax, 4.8, 5.0, "+")
    _line(ax, [(4.8, 3.82), (4.8, 4.78)])
    _line(ax, [(5.02, 5.0), (9.6, 5.0)])
    ax.text(9.1, 5.25, "$c_t$", fontsize=11)
    _op(ax, 7.8, 4.2, "tanh", "#fff2cc")
    _line(ax, [(7.8, 5.0), (7.8, 4.42)])
    _op(ax, 7.8, 3.2, "×")
    _line(ax, [(7.8, 3.98), (7.8, 3.42)])
    _line(ax, [(7.0, 2.25), (7.0, 3.2), (7.58, 3.2)])
    _line(ax, [(8.02, 3.2), (9.6, 3.2)])
    ax.text(9.1, 3.45, "$h_t$", fontsize=11)
    return ax


def draw_gru_cell(ax=None):
    """Schematic GRU cell (Keras ``reset_after=True``): z, r, candidate h~. Returns the axes."""
    ax = _canvas(
        ax, r"GRU:  $h_t = z \odot h_{t-1} + (1 - z) \odot \tilde h, \quad \tilde h = \tanh(x W + r \odot (h_{t-1} U))$"
    )
    gates = {"z": (2.8, "σ", "#f4cccc"), "r": (4.4, "σ", "#d9ead3"), "h̃": (6.2, "tanh", "#fff2cc")}
    _line(ax, [(0.4, 1.0), (6.2, 1.0)], arrow=False)
    ax.text(0.4, 0.55, "$h_{t-1}$, $x_t$", fontsize=11)
    for name, (x, act, color) in gates.items():
        _arrow(ax, (x, 1.0), (x, 1.75))
        _box(ax, x, 2.0, f"{name}: {act}", color, w=0.95, h=0.45)
    _line(ax, [(4.4, 2.25), (4.4, 2.7), (5.72, 2.7), (5.72, 2.2)])  # r acts inside the candidate
    ax.text(4.55, 2.8, "r ⊙ (h U)", fontsize=9)
    _line(ax, [(0.4, 5.0), (2.58, 5.0)])
    ax.text(0.4, 5.25, "$h_{t-1}$", fontsize=11)
    _op(ax, 2.8, 5.0, "×")
    _line(ax, [(2.8, 2.25), (2.8, 4.78)])
    _op(ax, 6.2, 3.8, "×")
    _line(ax, [(2.8, 3.3), (5.2, 3.3), (5.2, 3.8), (5.98, 3.8)])
    ax.text(3.4, 3.42, "1 − z", fontsize=10)
    _line(ax, [(6.2, 2.25), (6.2, 3.58)])
    _op(ax, 6.2, 5.0, "+")
    _line(ax, [(3.02, 5.0), (5.98, 5.0)])
    _line(ax, [(6.2, 4.02), (6.2, 4.78)])
    _line(ax, [(6.42, 5.0), (9.6, 5.0)])
    ax.text(9.1, 5.25, "$h_t$", fontsize=11)
    return ax


BEAM_COLOURS = {"live": "#1f4e79", "finished": "#2e7d32", "pruned": "#b0b0b0"}


def draw_beam_tree(tree, words, ax=None, best=None):
    """A beam search drawn as a tree: one column per step, candidates best first.

    tree: a list of nodes ``{"id", "parent", "step", "token", "log_prob", "status"}``, where
    ``parent`` is the id of the node it extends (None at step 1) and ``status`` is 'live'
    (kept on the beam), 'finished' (ended the caption) or 'pruned' (considered, dropped;
    drawn grey). words: token id -> str. best: the id of a node whose path is drawn thick
    (default: the finished node with the highest ``score``, else ``log_prob``).
    Returns the axes.
    """
    if not tree:
        raise ValueError("draw_beam_tree needs at least one node")
    by_id = {node["id"]: node for node in tree}
    steps = max(node["step"] for node in tree)
    rank = {}
    for step in range(1, steps + 1):
        column = sorted((n for n in tree if n["step"] == step), key=lambda n: -n["log_prob"])
        rank.update({n["id"]: r for r, n in enumerate(column)})
    rows = max(rank.values()) + 1
    if ax is None:
        _, ax = plt.subplots(figsize=(2.1 * steps + 1.5, 0.55 * rows + 1.2))
    if best is None:
        done = [n for n in tree if n["status"] == "finished"] or tree
        best = max(done, key=lambda n: n.get("score", n["log_prob"]))["id"]
    on_path = set()
    while best is not None:
        on_path.add(best)
        best = by_id[best]["parent"]

    def xy(node):
        return node["step"] * 2.0, -rank[node["id"]]

    ax.text(
        0,
        0,
        "<start>",
        ha="center",
        va="center",
        fontsize=9,
        bbox=dict(boxstyle="round,pad=0.3", fc="white", ec=BEAM_COLOURS["live"]),
    )
    for node in tree:
        x, y = xy(node)
        parent = by_id.get(node["parent"])
        px, py = xy(parent) if parent else (0, 0)
        colour = BEAM_COLOURS[node["status"]]
        thick = node["id"] in on_path
        ax.plot(
            [px + 0.55, x - 0.55],
            [py, y],
            color="#c62828" if thick else colour,
            lw=2.5 if thick else 0.9,
            zorder=1 if node["status"] == "pruned" else 2,
        )
        ax.text(
            x,
            y,
            f"{words[node['token']]}\n{node['log_prob']:.2f}",
            ha="center",
            va="center",
            fontsize=8,
            color="#808080" if node["status"] == "pruned" else "black",
            zorder=3,
            bbox=dict(
                boxstyle="round,pad=0.25",
                fc="#e8f5e9" if node["status"] == "finished" else "white",
                ec="#c62828" if thick else colour,
                lw=1.8 if thick else 0.8,
            ),
        )
    ax.set_xlim(-0.8, 2.0 * steps + 0.8)
    ax.set_ylim(-rows + 0.4, 0.8)
    ax.axis("off")
    handles = [plt.Line2D([], [], color=c, lw=2, label=s) for s, c in BEAM_COLOURS.items()]
    handles.append(plt.Line2D([], [], color="#c62828", lw=2.5, label="best caption"))
    ax.legend(handles=handles, loc="lower left", fontsize=8, ncol=4, frameon=False)
    return ax


def upsample_attention(attention_map, image_size, vmax=None):
    """An attention map (G, G) resized to the image, (height, width), with OpenCV's bilinear
    interpolation (as ``helpers.attention``'s grounding scores read it), rescaled to [0, 1] for
    display: by its own range, or divided by ``vmax`` (a scale shared by several maps, so that a
    flat map stays faint)."""
    import cv2
    import numpy as np

    height, width = image_size
    up = cv2.resize(np.asarray(attention_map, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    if vmax is not None:
        return np.clip(up / vmax, 0, 1)
    up -= up.min()
    return up / up.max() if up.max() > 0 else up


def overlay_attention(ax, image, attention, vmax=None):
    """Draw ``image`` with the upsampled ``attention`` (G, G) over it: hot where the model looks,
    transparent where it does not (so the image stays readable). vmax: see upsample_attention."""
    up = upsample_attention(attention, image.shape[:2], vmax)
    ax.imshow(image)
    ax.imshow(up, cmap="inferno", alpha=0.75 * up, vmin=0, vmax=1)
    ax.axis("off")
    return ax


def plot_attention_words(image, words, maps, cols=6, size=2.2, betas=None, vmax=None):
    """One panel per word: the image with the attention that produced the word laid over it,
    every panel on one colour scale (``vmax``, by default the largest weight of all the maps),
    so that a flat map looks flat.

    image (H, W, 3) uint8; words: list of str; maps: (len(words), G, G); betas: optional gate
    values (len(words),), shown under each word. Returns the figure.
    """
    import numpy as np

    if len(words) != len(maps):
        raise ValueError(f"{len(words)} words but {len(maps)} attention maps")
    vmax = float(np.max(maps)) if vmax is None else vmax
    rows = -(-len(words) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (ax, word, attention) in enumerate(zip(axes.flat, words, maps)):
        overlay_attention(ax, image, attention, vmax=vmax)
        ax.set_title(word if betas is None else f"{word}  (β {float(betas[k]):.2f})", fontsize=11)
        row, col = (int(i) for i in np.unravel_index(int(np.argmax(attention)), np.shape(attention)))
        ax.text(2, image.shape[0] - 3, f"peak: row {row}, column {col}", fontsize=7, color="white")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- CRNN (notebook 07)

BLANK_GREY = "#c8c8c8"


def _white(line):
    """The grey level of white: 255 for uint8 lines, 1 for float ones."""
    return 255 if str(line.dtype) == "uint8" else 1


def plot_ctc_alignment(ax, line, log_probs, charset, truth=None):
    """A text line with, under each of its T frames, that frame's most probable class:
    characters in black, blanks as grey dashes, and a character that repeats the previous
    frame's (merged away by CTC) in grey too. Returns the greedy reading."""
    height, width = line.shape[:2]
    T = log_probs.shape[0]
    best = log_probs.argmax(-1)
    ax.imshow(line, cmap="gray", vmin=0, vmax=_white(line), extent=(0, width, height, 0))
    ax.set_xlim(0, width)
    ax.set_ylim(height + 12, 0)
    ax.axis("off")
    step = width / T
    reading = []
    for t, c in enumerate(best):
        x = (t + 0.5) * step
        ax.axvline(t * step, ymin=0, ymax=12 / (height + 12), color="#e0e0e0", lw=0.5)
        if c == 0:
            ax.text(x, height + 7, "-", ha="center", va="center", fontsize=8, color=BLANK_GREY)
        else:
            merged = t > 0 and best[t - 1] == c
            ax.text(
                x,
                height + 7,
                charset[c - 1],
                ha="center",
                va="center",
                fontsize=8,
                color=BLANK_GREY if merged else "black",
                fontweight="normal" if merged else "bold",
            )
            if not merged:
                reading.append(charset[c - 1])
    reading = "".join(reading)
    title = f"read: {reading!r}" + ("" if truth is None else f"   (truth {truth!r})")
    ax.set_title(title, fontsize=9, color="black" if truth in (None, reading) else "#c00000")
    return reading


def diff_colours(truth, reading):
    """[(character, colour)] for ``reading``: black where it matches ``truth``, red where a
    character is wrong or extra; a missing character shows as a red underscore."""
    from difflib import SequenceMatcher

    out = []
    for op, i1, i2, j1, j2 in SequenceMatcher(None, truth, reading, autojunk=False).get_opcodes():
        if op == "equal":
            out += [(c, "black") for c in reading[j1:j2]]
        else:
            out += [(c, "#d00000") for c in reading[j1:j2]]
            out += [("_", "#d00000")] * max(0, (i2 - i1) - (j2 - j1))
    return out


def plot_readings(lines, truths, readings, cols=4, size=(3.2, 1.25)):
    """A grid of text lines, each titled with the model's reading, wrong characters in red."""
    import numpy as np

    rows = int(np.ceil(len(lines) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, line, truth, reading in zip(axes.flat, lines, truths, readings):
        ax.imshow(line, cmap="gray", vmin=0, vmax=_white(line))
        x = 0.0
        for char, colour in diff_colours(truth, reading) or [("(nothing)", "#d00000")]:
            ax.text(
                x,
                1.04,
                char,
                transform=ax.transAxes,
                color=colour,
                fontsize=10,
                family="monospace",
                fontweight="bold",
                va="bottom",
            )
            x += 0.06 * len(char)
        if truth != reading:
            ax.text(
                1.0,
                1.04,
                f"truth: {truth}",
                transform=ax.transAxes,
                fontsize=8,
                ha="right",
                va="bottom",
                color="#555555",
            )
    fig.tight_layout()
    return fig
