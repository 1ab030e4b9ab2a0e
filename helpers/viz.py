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
    ax.set_title("An RNN is one cell applied at every step; the hidden state (red arrows) carries the past", fontsize=11)
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
