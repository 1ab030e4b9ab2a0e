"""Show, Attend and Tell (Xu et al., 2015): an LSTM decoder that looks at a different part of
the image for every word, through additive (Bahdanau) attention over a grid of CNN features.

Shapes: B images, C captions in the batch (each points at one image), T tokens per padded
caption, L = G x G locations of the feature grid, F feature size, A attention size, E
embedding size, H hidden size, V vocabulary.

Per step t, with the previous state h_{t-1}:
    e_ti = v^T tanh(W_a a_i + b + W_h h_{t-1})      alpha_t = softmax(e_t)     z_t = sum_i alpha_ti a_i
    beta_t = sigmoid(w_b^T h_{t-1} + b_b)            (the "gating scalar")
    p_t = sum_i alpha_ti (x_i, y_i)                  (where it looked: the cells' coordinates)
    h_t, c_t = LSTM([E w_{t-1}, p_t], h_{t-1}, c_{t-1})  (the paper: LSTM([E w_{t-1}, beta_t z_t], ...))
    p(w_t) = softmax(W_o [h_t, beta_t z_t])
and h_0 = c_0 = 0 (the paper: tanh(W mean_i a_i)). By default the image reaches a word only
through that step's context, so the map behind a word shows where the word came from; the
LSTM learns *where* it looked (``where_into_lstm``), not *what* it saw there, so that it can
look for the next object elsewhere and say how the two lie (notebook 06 measures it); with
the paper's two extra paths (``init_from_mean``, ``context_into_lstm``) the decoder looks at
an object a word or two early and names it from memory (notebook 06 measures both). The
loss may add the doubly stochastic penalty lambda * sum_i (1 - sum_t alpha_ti)^2, which
discourages attending one place for the whole caption.

Also here: the **grounding** score that measures whether the maps land on the objects the
words name (``grounding``, ``grounding_scores``). The model is written with ``keras.ops``
only, so it runs on any Keras backend.
"""

import keras
import numpy as np
from keras import ops

from .decoding import compiled_forward, compiled_step
from .features import coordinate_channels, small_cnn, with_coordinates


class AdditiveAttention(keras.layers.Layer):
    """e = v^T tanh(W_a a + b + W_h h), alpha = softmax(e) over the L locations, z = sum alpha a.

    ``keys(features)`` computes W_a a + b once per image; ``call(features, keys, h)`` then
    costs one (H x A) product per step. features (N, L, F), keys (N, L, A), h (N, H) ->
    (z (N, F), alpha (N, L)).
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        policy = self.dtype_policy  # sublayers compute in the layer's dtype (float64 for checks)
        self.W_a = keras.layers.Dense(units, name="W_a", dtype=policy)  # with the bias b
        self.W_h = keras.layers.Dense(units, use_bias=False, name="W_h", dtype=policy)
        self.v = keras.layers.Dense(1, use_bias=False, name="v", dtype=policy)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units)
        return config

    def build(self, features_shape, keys_shape, h_shape):
        for layer, shape in ((self.W_a, features_shape), (self.W_h, h_shape), (self.v, (None, None, self.units))):
            if not layer.built:  # keys() may have built W_a already
                layer.build(shape)

    def keys(self, features):
        return self.W_a(features)

    def call(self, features, keys, h):
        scores = ops.squeeze(self.v(ops.tanh(keys + ops.expand_dims(self.W_h(h), 1))), axis=-1)  # (N, L)
        alpha = ops.softmax(scores, axis=-1)
        # (N, 1, L) @ (N, L, F): as an einsum, a train step ran about 1.2x slower (bench/attention_context.py)
        return ops.matmul(ops.expand_dims(alpha, 1), features)[:, 0], alpha


class ShowAttendTell(keras.Model):
    """images (B, S, S, 3) 0-255 with ``encoder='small_cnn'``, or spatial feature maps
    (B, G, G, D) from ``helpers.features.build_encoder(..., spatial=True)`` with ``encoder=None``.

    cnn_blocks: stride-2 blocks of the small CNN (3: a 96 px image gives a 12 x 12 grid).
    cnn_top_convs: stride-1 blocks after them (``helpers.features.small_cnn``); 0 by default:
    with one, each cell sees a whole shape and its neighbours, and the maps land on the named
    object far less often (on the embedded data, 6 epochs each: test grounding 0.45 against
    0.78 without it, while the captions named the scenes a little more often, 0.48 vs 0.40).
    penalty: lambda of the doubly stochastic penalty (0 switches it off).
    init_from_mean, context_into_lstm: the paper's other two paths from the image to the
    decoder (h_0, c_0 from the mean feature; the context as LSTM input); both off by default.
    where_into_lstm: the LSTM also reads where this step's attention looked, the
    attention-weighted (x, y) of the grid's cells in [-1, 1] (on by default; on the embedded
    data, 10 epochs, two runs each: scene exact 0.79 and 0.82 against 0.73 and 0.74 without,
    two-object scenes 0.75 against 0.57 and 0.58).
    """

    def __init__(
        self,
        vocab_size,
        embed_dim=128,
        hidden=256,
        attention_dim=128,
        feature_dim=128,
        encoder="small_cnn",
        image_size=96,
        cnn_width=32,
        cnn_blocks=3,
        cnn_top_convs=0,
        penalty=0.0,
        init_from_mean=False,
        context_into_lstm=False,
        where_into_lstm=True,
        name="show_attend_tell",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if encoder not in ("small_cnn", None):
            raise ValueError(f"encoder must be 'small_cnn' or None (precomputed spatial features), got {encoder!r}")
        self.vocab_size, self.embed_dim, self.hidden = int(vocab_size), embed_dim, hidden
        self.attention_dim, self.feature_dim = attention_dim, feature_dim
        self.encoder, self.image_size, self.cnn_width, self.cnn_blocks = encoder, image_size, cnn_width, cnn_blocks
        self.cnn_top_convs = cnn_top_convs
        self.penalty = float(penalty)
        self.init_from_mean, self.context_into_lstm = bool(init_from_mean), bool(context_into_lstm)
        self.where_into_lstm = bool(where_into_lstm)
        self.cnn = small_cnn(image_size, cnn_width, blocks=cnn_blocks, top_convs=cnn_top_convs) if encoder else None
        self.project = keras.layers.Dense(feature_dim, activation="relu", name="feature_projection")
        if init_from_mean:
            self.init_h = keras.layers.Dense(hidden, activation="tanh", name="init_h")
            self.init_c = keras.layers.Dense(hidden, activation="tanh", name="init_c")
        self.attention = AdditiveAttention(attention_dim, name="attention")
        self.gate = keras.layers.Dense(1, activation="sigmoid", name="gate")
        self.embed = keras.layers.Embedding(vocab_size, embed_dim, name="word_embedding")
        self.cell = keras.layers.LSTMCell(hidden, name="decoder")
        self.logits = keras.layers.Dense(vocab_size, name="word_logits")

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            embed_dim=self.embed_dim,
            hidden=self.hidden,
            attention_dim=self.attention_dim,
            feature_dim=self.feature_dim,
            encoder=self.encoder,
            image_size=self.image_size,
            cnn_width=self.cnn_width,
            cnn_blocks=self.cnn_blocks,
            cnn_top_convs=self.cnn_top_convs,
            penalty=self.penalty,
            init_from_mean=self.init_from_mean,
            context_into_lstm=self.context_into_lstm,
            where_into_lstm=self.where_into_lstm,
        )
        return config

    def encode(self, images, training=False):
        """(B, S, S, 3) images (or (B, G, G, D) maps) -> features a (B, L, F) with L = G * G."""
        x = self.cnn(images, training=training) if self.cnn is not None else ops.cast(images, self.compute_dtype)
        grid = int(x.shape[1])
        x = with_coordinates(x)  # (B, G, G, F + 2)
        return self.project(ops.reshape(x, (-1, grid * grid, x.shape[-1])))

    def _start(self, features):
        if self.init_from_mean:
            mean = ops.mean(features, axis=1)
            h, c = self.init_h(mean), self.init_c(mean)
        else:
            h = c = ops.zeros((ops.shape(features)[0], self.hidden), dtype=features.dtype)
        return {
            "h": h,
            "c": c,
            "features": features,
            "keys": self.attention.keys(features),
            "alpha": ops.zeros_like(features[:, :, 0]),
            "beta": ops.zeros_like(features[:, 0, 0]),
        }

    def initial_state(self, images):
        """Decoder state for ``helpers.decoding``: a dict of h, c (B, H), features (B, L, F),
        keys (B, L, A), alpha (B, L) and beta (B,), the attention and the gate of the last step
        (zeros before the first)."""
        return self._start(self.encode(images, training=False))

    def _advance(self, words, state, training=False):
        """One step: previous words (N,) and state -> logits (N, V) and the new state."""
        context, alpha = self.attention(state["features"], state["keys"], state["h"])
        beta = self.gate(state["h"])  # (N, 1): how much of the context this word gets
        context = beta * context
        inputs = [self.embed(words)] + ([context] if self.context_into_lstm else [])
        if self.where_into_lstm:  # where it looked, not what it saw: (N, 2)
            inputs.append(ops.matmul(alpha, ops.cast(cell_coordinates(alpha.shape[-1]), alpha.dtype)))
        x = ops.concatenate(inputs, axis=-1) if len(inputs) > 1 else inputs[0]
        h, (h, c) = self.cell(x, [state["h"], state["c"]], training=training)
        logits = self.logits(ops.concatenate([h, context], axis=-1))
        return logits, {**state, "h": h, "c": c, "alpha": alpha, "beta": beta[:, 0]}

    @compiled_forward
    def teacher_forced(self, images, image_index, tokens, training=False):
        """Logits (C, T - 1, V) for ``tokens[:, 1:]`` and the attention (C, T - 1, L) behind each
        (compiled when called on its own, not training: ``helpers.decoding.compiled_forward``)."""
        features = ops.take(self.encode(images, training=training), image_index, axis=0)
        state = self._start(features)
        logits, alphas = [], []
        for t in range(tokens.shape[1] - 1):  # unrolled: captions are padded to one length
            step_logits, state = self._advance(tokens[:, t], state, training)
            logits.append(step_logits)
            alphas.append(state["alpha"])
        return ops.stack(logits, axis=1), ops.stack(alphas, axis=1)

    def call(self, images, image_index, tokens, training=False):
        """Teacher-forced logits (C, T - 1, V); the doubly stochastic penalty goes to ``self.losses``."""
        logits, alphas = self.teacher_forced(images, image_index, tokens, training)
        if self.penalty:
            self.add_loss(self.penalty * doubly_stochastic_penalty(alphas, tokens[:, 1:]))
        return logits

    @compiled_step
    def step(self, tokens, state):
        """One decoding step for ``helpers.decoding``: tokens (B,), state -> (log_probs (B, V), state).
        ``state['alpha']`` holds the attention (B, L) used for the word just scored, and
        ``state['beta']`` (B,) the gate on its context."""
        logits, state = self._advance(tokens, state)
        return ops.log_softmax(logits, axis=-1), state


def cell_coordinates(places):
    """(L, 2): the x and y in [-1, 1] of the L = G x G cells of a grid, in the order of the
    flattened features (``coordinate_channels``)."""
    grid = int(round(places**0.5))
    return coordinate_channels(grid).reshape(grid * grid, 2)


def doubly_stochastic_penalty(alphas, targets, pad_id=0):
    """Mean over captions of sum_i (1 - sum_t alpha_ti)^2, over the non-<pad> steps only.

    alphas (C, T', L), targets (C, T') int.
    """
    mask = ops.expand_dims(ops.cast(ops.not_equal(targets, pad_id), alphas.dtype), -1)
    coverage = ops.sum(alphas * mask, axis=1)  # (C, L): how much attention each place got
    return ops.mean(ops.sum(ops.square(1.0 - coverage), axis=-1))


# ----------------------------------------------------------------------------- grounding


def box_mask(boxes, image_size):
    """(height, width) bool: the pixels inside ``boxes``, one box [x0, y0, x1, y1) in pixels or
    a list of them (their union: a word with several boxes, e.g. two men in Flickr30k)."""
    mask = np.zeros(image_size, bool)
    for x0, y0, x1, y1 in np.reshape(np.round(boxes), (-1, 4)).astype(int):
        mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return mask


def upsampled(attention_map, image_size):
    """``attention_map`` (G, G) resized to the image (``image_size`` = (height, width)) by
    bilinear interpolation (OpenCV), as every grounding score here reads it."""
    import cv2

    height, width = image_size
    return cv2.resize(np.asarray(attention_map, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def peak_in_box(attention_map, boxes, image_size):
    """Whether the peak of ``attention_map`` (G, G), upsampled to the image, falls inside
    ``boxes`` (one box [x0, y0, x1, y1) in pixels, or a list: any of them)."""
    up = upsampled(attention_map, image_size)
    return bool(box_mask(boxes, image_size).flat[int(np.argmax(up))])


def mass_in_box(attention_map, boxes, image_size):
    """The share of the attention, upsampled to the image, that falls inside ``boxes``: Liu et
    al.'s (AAAI 2017) "attention correctness" of one word."""
    up = upsampled(attention_map, image_size)
    return float(up[box_mask(boxes, image_size)].sum() / up.sum())


def random_object_share(boxes, objects, image_size):
    """The chance that a peak placed uniformly inside one of ``objects`` (boxes), picked at
    random, falls inside ``boxes``: what finding *an* object, not the one named, earns."""
    mask = box_mask(boxes, image_size)
    return float(np.mean([mask[box_mask(o, image_size)].mean() for o in objects]))


def grounding(triples, image_size):
    """Grounding scores over ``[(map (G, G), the word's box or boxes, the boxes of all the
    image's objects[, image name]), ...]``; image_size: (height, width) in pixels, or
    {image name: (height, width)} when the triples name their images:

    grounding: the share of maps whose upsampled peak falls inside their box;
    grounding_uniform: what a uniformly random peak would get (mean box area / image area);
    grounding_random_object: what a peak on a random object of the image would get
    (``random_object_share``); attention_correctness: the mean attention mass inside the box
    (``mass_in_box``; a uniform map's is grounding_uniform).
    """
    scores = {"grounding": [], "grounding_uniform": [], "grounding_random_object": [], "attention_correctness": []}
    for m, boxes, objects, *name in triples:
        size = image_size[name[0]] if name else image_size
        scores["grounding"].append(peak_in_box(m, boxes, size))
        scores["grounding_uniform"].append(box_mask(boxes, size).mean())
        scores["grounding_random_object"].append(random_object_share(boxes, objects, size))
        scores["attention_correctness"].append(mass_in_box(m, boxes, size))
    if not scores["grounding"]:
        raise ValueError("grounding needs at least one (attention map, box, objects) triple")
    return {k: float(np.mean(v)) for k, v in scores.items()}


def grounding_pairs(alphas, images, tokens, vocab, boxes):
    """``grounding``'s quadruples (map (G, G), the word's boxes, the boxes of all the image's
    objects, image name) of every word that has a box in ``boxes`` ({file name: [{"word",
    "box"}]}), from a teacher-forced pass: alphas (C, T - 1, L) behind ``tokens[:, 1:]``
    (C, T) int, images (C,) each caption's file name."""
    alphas = ops.convert_to_numpy(alphas)
    grid = int(round(alphas.shape[-1] ** 0.5))
    pairs = []
    for row, (name, caption_tokens) in enumerate(zip(images, tokens)):
        box_of = {}  # a word may name several boxes (Flickr30k: "two men"): any of them counts
        for b in boxes.get(name, []):
            box_of.setdefault(b["word"], []).append(b["box"])
        objects = [b["box"] for b in boxes.get(name, [])]
        for t, token in enumerate(caption_tokens[1:]):
            word = vocab.id_to_token[token]
            if word in box_of:
                pairs.append((alphas[row, t].reshape(grid, grid), box_of[word], objects, name))
    return pairs


def grounding_scores(model, inputs, names, captions, vocab, boxes, image_size, max_len=30, batch_size=64):
    """Teacher-force every reference caption of the images ``names`` through ``model`` (a
    ``ShowAttendTell``); for each word that has a box in ``boxes`` ({file name: [{"word",
    "box"}]}), does the peak of the attention that produced it, upsampled to the image, fall
    inside the box, and how much of it does? Returns ``grounding``'s scores.

    inputs (N, ...): the model's inputs for the N images ``names``, in that order; captions:
    a DataFrame with columns ``image`` and ``caption`` (rows of other images are ignored);
    image_size: (height, width) of the images in pixels, or {file name: (height, width)}.
    """
    from .pipeline import caption_chunks

    pairs = []
    for start, stop, refs, image_index, tokens in caption_chunks(list(names), captions, vocab, max_len, batch_size):
        _, alphas = model.teacher_forced(inputs[start:stop], image_index, tokens)
        pairs += grounding_pairs(alphas, refs.image, tokens, vocab, boxes)
    if not isinstance(image_size, dict):
        image_size = {name: image_size for *_, name in pairs}
    return grounding(pairs, image_size)
