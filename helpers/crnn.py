"""Reading text in images: rendered text lines, the CRNN model, the CTC loss and its decoding
(edit distance, CER and word accuracy live with the other metrics, in ``helpers.metrics``).

Shapes: N lines, an image (H, W) = (32, 128) grey levels in [0, 1]; the model turns it
into T = W / 4 = 32 frames, each a distribution over C = 37 classes: class 0 is the CTC
*blank*, class i >= 1 is ``CHARSET[i - 1]``. Rendering and decoding need only NumPy and
OpenCV; the model and its loss are Keras layers and ``keras.ops``; only the train step
(``make_ctc_train_step``) is TensorFlow's.
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from . import shown_path, write_atomic
from .data import DATA_DIR, SHIPPED_CAPTIONS

CHARSET = "abcdefghijklmnopqrstuvwxyz0123456789"
BLANK = 0
NUM_CLASSES = len(CHARSET) + 1
HEIGHT, WIDTH = 32, 128
TEXT_LINES_DIR = DATA_DIR / "text_lines"
SPLIT_SIZES = {"train": 24000, "val": 1000, "test": 2000}
_FORMAT = 1  # bump when rendering changes, so old caches are not reused

_CLASS_OF = {c: i + 1 for i, c in enumerate(CHARSET)}


def encode_text(text):
    """Class ids of ``text`` (no blank). An unknown character raises ValueError naming it."""
    try:
        return [_CLASS_OF[c] for c in text]
    except KeyError as err:
        raise ValueError(
            f"character {err.args[0]!r} in {text!r} is not in the CRNN's character set (lower-case letters and digits)"
        ) from None


def decode_classes(ids):
    """Text of class ids (blanks dropped)."""
    return "".join(CHARSET[i - 1] for i in ids if i != BLANK)


# ----------------------------------------------------------------------------- rendering

_FONTS = {  # OpenCV's built-in Hershey vector fonts: no font files needed
    "simplex": 0,
    "plain": 1,
    "duplex": 2,
    "complex": 3,
    "triplex": 4,
    "complex_small": 5,
}


def caption_words(min_count=3, min_len=2, max_len=10):
    """Words of the real Flickr30k captions shipped in data/ (letters only), sorted."""
    import warnings
    from collections import Counter

    from .data import AnnotationWarning, read_captions
    from .text import tokenize

    with warnings.catch_warnings():  # the file's known HTML-entity repairs do not matter here
        warnings.simplefilter("ignore", AnnotationWarning)
        captions = read_captions(SHIPPED_CAPTIONS).caption
    counts = Counter(w for c in captions for w in tokenize(c))
    return sorted(w for w, n in counts.items() if n >= min_count and min_len <= len(w) <= max_len and w.isalpha())


def render_line(text, rng=None, jitter=1.0, font=None, height=HEIGHT, width=WIDTH):
    """Draw ``text`` as a grey text line: float32 (height, width), dark ink (near 0) on a
    light background, the text left-aligned and squeezed horizontally if it is too long.

    jitter: 0 gives a clean, centred line; 1 the training distribution (random font, stroke
    width, slant, rotation, offset, blur, noise and contrast). rng: a NumPy Generator (or a
    seed) that makes the line reproducible.
    """
    import cv2

    encode_text(text)  # clear error on a character the model cannot output
    rng = np.random.default_rng(rng)
    j = float(jitter)
    face = _FONTS[font] if font is not None else int(rng.choice(list(_FONTS.values())))
    scale = 2.0  # drawn at ~4x and shrunk: smooth, anti-aliased strokes
    thickness = max(1, int(round(2 + j * rng.uniform(-1, 3))))
    (w, h), base = cv2.getTextSize(text, face, scale, thickness)
    pad = 12 + thickness
    canvas = np.zeros((h + base + 2 * pad, w + 2 * pad), np.uint8)
    cv2.putText(canvas, text, (pad, pad + h), face, scale, 255, thickness, cv2.LINE_AA)
    # slant (shear) and a small rotation about the centre
    shear, angle = j * rng.uniform(-0.35, 0.35), j * rng.uniform(-3, 3)
    rows, cols = canvas.shape
    rot = cv2.getRotationMatrix2D((cols / 2, rows / 2), angle, 1.0)
    affine = rot @ np.array([[1, -shear, shear * rows / 2], [0, 1, 0], [0, 0, 1]])
    extra = int(abs(shear) * rows) + 4
    canvas = cv2.warpAffine(canvas, affine + [[0, 0, extra / 2], [0, 0, 0]], (cols + extra, rows))
    ys, xs = np.nonzero(canvas > 40)
    if len(xs):  # crop to the ink, with a little margin
        m = 4
        canvas = canvas[max(ys.min() - m, 0) : ys.max() + m + 1, max(xs.min() - m, 0) : xs.max() + m + 1]
    # the ink takes 55-90% of the line's height
    ink_height = int(round(height * (0.75 + j * rng.uniform(-0.2, 0.15))))
    new_w = max(1, int(round(canvas.shape[1] * ink_height / canvas.shape[0])))
    new_w = min(new_w, width - 2)
    small = cv2.resize(canvas, (new_w, ink_height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    line = np.zeros((height, width), np.float32)
    top = (height - ink_height) // 2 + int(round(j * rng.integers(-2, 3)))
    top = min(max(top, 0), height - ink_height)
    left = int(round(j * rng.integers(0, max(1, min(12, width - new_w))))) if j else (width - new_w) // 2
    line[top : top + ink_height, left : left + new_w] = small
    if j:
        sigma = j * rng.uniform(0, 1.0)
        if sigma > 0.1:
            line = cv2.GaussianBlur(line, (0, 0), sigma)
    background = 1.0 - j * rng.uniform(0, 0.3)
    ink = j * rng.uniform(0, 0.35)
    image = background - (background - ink) * line
    if j:
        image = image + rng.normal(0, j * rng.uniform(0, 0.08), image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def random_text(rng, words):
    """A caption word or (half the time) a digit string of 3-8 digits."""
    if rng.random() < 0.5:
        return str(words[rng.integers(len(words))])
    return "".join(rng.choice(list("0123456789"), size=int(rng.integers(3, 9))))


def make_text_lines(n, seed=0, words=None, start=0, progress=False):
    """``n`` rendered lines: (images float32 (n, H, W), texts list of str).

    Line ``i`` depends only on (seed, start + i): the first k lines of a longer set are
    the same lines.
    """
    from tqdm.auto import tqdm

    words = caption_words() if words is None else list(words)
    images = np.empty((n, HEIGHT, WIDTH), np.float32)
    texts = []
    for i in tqdm(range(n), desc="Rendering text lines", disable=not progress, leave=False):
        rng = np.random.default_rng([seed, start + i])
        texts.append(random_text(rng, words))
        images[i] = render_line(texts[-1], rng)
    return images, texts


def load_text_lines(root=None, seed=0, sizes=None, progress=True):
    """The text-line dataset {split: (images uint8 (n, H, W), texts)} for train/val/test,
    rendered on first use into ``root`` (default data/text_lines/, not in git) and read
    from there afterwards. The three splits are disjoint ranges of line indices."""
    root = Path(root) if root is not None else TEXT_LINES_DIR
    sizes = dict(SPLIT_SIZES if sizes is None else sizes)
    path = root / (f"lines-seed{seed}-" + "-".join(f"{k}{v}" for k, v in sizes.items()) + f"-v{_FORMAT}.npz")
    if path.is_file():
        try:
            with np.load(path) as data:
                return {s: (data[f"{s}_images"], json.loads(str(data[f"{s}_texts"]))) for s in sizes}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            print(f"{shown_path(path)} is unreadable ({err}); rendering it again.")
    root.mkdir(parents=True, exist_ok=True)
    words = caption_words()
    splits, start = {}, 0
    for split, n in sizes.items():
        images, texts = make_text_lines(n, seed, words, start=start, progress=progress)
        splits[split] = (np.round(images * 255).astype(np.uint8), texts)
        start += n
    arrays = {f"{s}_images": im for s, (im, _) in splits.items()}
    arrays.update({f"{s}_texts": np.array(json.dumps(t)) for s, (_, t) in splits.items()})
    write_atomic(path, lambda f: np.savez(f, **arrays))  # a crash never leaves a torn file
    return splits


# ----------------------------------------------------------------------------- CTC decoding


def ctc_greedy_decode(log_probs):
    """Best path decoding: per-frame argmax, merge repeats, drop blanks.

    log_probs: (T, C) or (N, T, C). Returns a list of class ids (or N such lists).
    """
    log_probs = np.asarray(log_probs)
    if log_probs.ndim == 3:
        return [ctc_greedy_decode(lp) for lp in log_probs]
    best = log_probs.argmax(-1)
    keep = np.r_[True, best[1:] != best[:-1]] & (best != BLANK)  # a change of class starts a character
    return best[keep].tolist()


def _logsumexp(a, b):
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    m = max(a, b)
    return m + np.log1p(np.exp(-abs(a - b)))


def ctc_prefix_beam_search(log_probs, beam_width=10, prune=1e-3):
    """CTC prefix beam search: keeps the ``beam_width`` most probable *labellings* (prefixes),
    each with the total probability of all its alignments, split into those that end in a
    blank (p_b) and those that end in its last character (p_nb).

    log_probs: (T, C) log-softmax, or (N, T, C). prune: characters below this probability
    in a frame are not tried (0 tries all). Returns [(ids, log_prob), ...] best first
    (or N such lists).
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if log_probs.ndim == 3:
        return [ctc_prefix_beam_search(lp, beam_width, prune) for lp in log_probs]
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    neg = -np.inf
    beams = {(): (0.0, neg)}  # prefix -> (log p_b, log p_nb)
    floor = np.log(prune) if prune > 0 else neg
    for frame in log_probs:
        chars = [c for c in np.flatnonzero(frame >= floor) if c != BLANK]
        new = {}

        def add(prefix, pb, pnb, new=new):
            ob, onb = new.get(prefix, (neg, neg))
            new[prefix] = (_logsumexp(ob, pb), _logsumexp(onb, pnb))

        for prefix, (pb, pnb) in beams.items():
            total = _logsumexp(pb, pnb)
            add(prefix, total + frame[BLANK], neg)  # a blank: the labelling stays
            if prefix:  # the last character again, not separated by a blank: merged
                add(prefix, neg, pnb + frame[prefix[-1]])
            for c in chars:
                # after a blank the same character starts a new one; right after itself it cannot
                p = (pb if prefix and c == prefix[-1] else total) + frame[c]
                add(prefix + (int(c),), neg, p)
        beams = dict(sorted(new.items(), key=lambda kv: -_logsumexp(*kv[1]))[:beam_width])
    return [(list(p), float(_logsumexp(*s))) for p, s in beams.items()]


def ctc_forward(log_probs, label):
    """-log p(label | frames) by the CTC forward recursion (NumPy, log space).

    log_probs (T, C) log-softmax; label a list of class ids. alpha[t, s] is the log
    probability of all alignments of the first t + 1 frames that end in position s of the
    label with blanks around every character, ``[blank, l1, blank, l2, ..., blank]``.
    Returns (loss, alpha (T, 2L + 1)).
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    ext = [BLANK]
    for c in label:
        ext += [c, BLANK]
    T, S = len(log_probs), len(ext)
    alpha = np.full((T, S), -np.inf)
    alpha[0, 0] = log_probs[0, BLANK]
    if S > 1:
        alpha[0, 1] = log_probs[0, ext[1]]
    for t in range(1, T):
        for s in range(S):
            paths = [alpha[t - 1, s]]  # stay
            if s >= 1:
                paths.append(alpha[t - 1, s - 1])  # move on by one
            if s >= 2 and ext[s] != BLANK and ext[s] != ext[s - 2]:
                paths.append(alpha[t - 1, s - 2])  # skip the blank between two different characters
            alpha[t, s] = np.logaddexp.reduce(paths) + log_probs[t, ext[s]]
    total = np.logaddexp(alpha[-1, -1], alpha[-1, -2]) if S > 1 else alpha[-1, -1]
    return float(-total), alpha


# ----------------------------------------------------------------------------- the model


def build_crnn(hidden=64, filters=(32, 64, 96, 96), height=HEIGHT, width=WIDTH):
    """The CRNN: a CNN (conv-BN-ReLU blocks; pooling halves height and width twice, then
    height only) collapses each column to one feature vector, a bidirectional LSTM reads
    the W / 4 columns, a dense layer gives per-frame logits over NUM_CLASSES.

    Input (N, height, width, 1) in [0, 1]; output (N, width // 4, NUM_CLASSES) logits.
    """
    import keras
    from keras import layers

    x = inputs = keras.Input((height, width, 1), name="line")
    pools = [(2, 2), (2, 2), (2, 1), (2, 1)]
    for k, (f, pool) in enumerate(zip(filters, pools)):
        x = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{k + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{k + 1}")(x)
        x = layers.ReLU(name=f"relu{k + 1}")(x)
        x = layers.MaxPooling2D(pool, name=f"pool{k + 1}")(x)
    _, h, w, c = x.shape
    x = layers.Permute((2, 1, 3), name="columns")(x)  # (N, W', H', C): width becomes time
    x = layers.Reshape((w, h * c), name="collapse_height")(x)
    x = layers.Dense(hidden, activation="relu", name="column_features")(x)
    x = layers.Bidirectional(layers.LSTM(hidden, return_sequences=True), name="bilstm")(x)
    logits = layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, logits, name="crnn")


def ctc_loss(labels, label_lengths, logits):
    """Mean CTC loss of a batch: labels (N, L) int padded anywhere past label_lengths (N,),
    logits (N, T, C) with the blank at class 0."""
    import keras

    n, t = keras.ops.shape(logits)[0], keras.ops.shape(logits)[1]
    frames = keras.ops.full((n,), t, dtype="int32")
    return keras.ops.mean(keras.ops.ctc_loss(labels, logits, label_lengths, frames, mask_index=BLANK))


def pad_labels(texts):
    """(labels int32 (N, L), lengths int32 (N,)) for a list of strings; pads with the blank."""
    ids = [encode_text(t) for t in texts]
    if any(len(i) == 0 for i in ids):
        raise ValueError("an empty text line has no characters to learn")
    labels = np.zeros((len(ids), max(map(len, ids))), np.int32)
    for row, i in zip(labels, ids):
        row[: len(i)] = i
    return labels, np.array([len(i) for i in ids], np.int32)


def receptive_field(model):
    """(height, width) in pixels of the input region that can reach one frame before the
    LSTM (the CNN's receptive field), from the conv kernels and pool sizes."""
    size, jump = np.array([1, 1]), np.array([1, 1])
    for layer in model.layers:
        kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        if kernel is None:
            continue
        stride = np.array(getattr(layer, "strides", (1, 1)))
        size = size + (np.array(kernel) - 1) * jump
        jump = jump * stride
    return tuple(int(s) for s in size)


def line_inputs(images):
    """Model input (N, H, W, 1) float32 in [0, 1] from uint8 or float lines (N, H, W)."""
    images = np.asarray(images)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    return (images.astype(np.float32) / scale)[..., None]


def frame_log_probs(model, images, batch_size=500):
    """Per-frame log-softmax (N, T, C) of the model on lines (N, H, W)."""
    import keras

    out = [
        keras.ops.convert_to_numpy(
            keras.ops.log_softmax(model(line_inputs(images[i : i + batch_size]), training=False))
        )
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, WIDTH // 4, NUM_CLASSES), np.float32)


def decode_lines(log_probs, beam_width=None):
    """Texts of per-frame log-probs (N, T, C): greedy CTC decoding, or prefix beam search."""
    if beam_width is None:
        return [decode_classes(ids) for ids in ctc_greedy_decode(log_probs)]
    return [decode_classes(hyps[0][0]) for hyps in ctc_prefix_beam_search(log_probs, beam_width)]


def read_text(model, images, beam_width=None):
    """The model's reading of each line (N, H, W): greedy CTC decoding, or prefix beam search."""
    return decode_lines(frame_log_probs(model, images), beam_width)


def make_ctc_train_step(model, optimizer, clip_norm=5.0):
    """A compiled step: (lines (N, H, W, 1), labels (N, L), label_lengths (N,)) -> (loss, grad norm)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def train_step(lines, labels, label_lengths):
        with tf.GradientTape() as tape:
            loss = ctc_loss(labels, label_lengths, model(lines, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        grads, norm = tf.clip_by_global_norm(grads, clip_norm)
        optimizer.apply(grads, model.trainable_variables)
        return loss, norm

    return train_step
