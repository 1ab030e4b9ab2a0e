"""Show and Tell (Vinyals et al., 2015): a CNN encodes the image, an LSTM writes the caption.

Shapes: B images, C captions in the batch (each points at one image), T tokens per padded
caption (``<start>`` ... ``<end>`` ``<pad>``...), E embedding size, H hidden size, V vocabulary.

As in the paper, the image embedding is the LSTM's **first input** (step -1), before
``<start>``; the output at that step is not scored. The alternative, the image as the
initial state (``image_as="state"``), is one option away. Training uses teacher forcing:
the LSTM reads the true previous word, and the loss ignores ``<pad>`` positions
(``helpers.teacher_forcing``).

With ``image_at_output`` (the default) the image also reaches every word's prediction, as in m-RNN's
multimodal layer (Mao et al., 2015): p(w_t) = softmax(W_o relu(W_h h_t + W_u u)), u the
image's readout. Through the LSTM alone a word sees the image only as what the state still
remembers of it. On the embedded data, in the command line's 10 epochs, that path with a
12 x 12 grid (``cnn_blocks=3``) and one more convolution (``cnn_top_convs=1``, so that each
cell sees a whole shape), the defaults, took the test captions that name exactly the
scene's objects from 11% to 43% (seed 0; the README gives the rest).

Fine-tuning (the tutorials' next step): with a ``keras.applications`` encoder inside the
model (``encoder="resnet50"``, ...) and ``fine_tune=N``, the encoder's top N weighted layers
train with the decoder; give ``helpers.teacher_forcing.make_train_step`` an
``encoder_optimizer`` with a smaller learning rate so that the first, large decoder
gradients do not wreck the ImageNet features.

Written with ``keras.ops`` only, so it runs on any Keras backend (TensorFlow here, JAX on
the GPU machine that ``bench/full_scale.py`` ran on); ``helpers.decoding.compiled_step`` has
the backend compile its decoding step where it can.
"""

import keras
from keras import ops

from .decoding import compiled_step
from .features import APPLICATIONS, build_encoder, small_cnn, unfreeze_top, with_coordinates


class GridReadout(keras.layers.Layer):
    """A feature map (B, G, G, C) -> (B, units): one Dense + ReLU applied to every cell, with
    the cell's coordinates appended (``with_coordinates``), then the maximum over the cells.

    The same weights at every cell make a shape's features the same wherever it is drawn, and
    the coordinates keep *where* it is ("to the left of"). A flattened map instead needs its own
    weights for every shape at every place: on the embedded data, Show and Tell on a flattened
    map never learnt the shapes (one-object scenes named right 22% of the time, chance 14%).
    """

    def __init__(self, units=256, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.cell = keras.layers.Dense(units, activation="relu", name="cell")

    def get_config(self):
        return {**super().get_config(), "units": self.units}

    def call(self, x):
        return ops.max(self.cell(with_coordinates(x)), axis=(1, 2))


class ShowAndTell(keras.Model):
    """images (B, S, S, 3) 0-255, or features (B, F) with ``encoder=None``.

    vocab_size: V. encoder: 'small_cnn' (trained end to end on pixels), None (the inputs
    are precomputed feature vectors, e.g. from ``helpers.features.extract_features``), or a
    ``keras.applications`` name from ``helpers.features.APPLICATIONS`` (pixels through that
    pretrained encoder, frozen but for its top ``fine_tune`` weighted layers; its batch
    normalisation always runs on stored statistics). encoder_weights: what
    ``build_encoder`` loads into it ('imagenet', None, or a weights file). cnn_blocks,
    cnn_top_convs: the small CNN's stride-2 blocks and stride-1 blocks after them
    (``helpers.features.small_cnn``; 3 and 1: a 12 x 12 grid whose cells each see a whole
    shape). image_at_output: the image also enters the output layer at every step (the
    decoding state is then (h, c, u)). ``cnn_blocks=4, cnn_top_convs=0,
    image_at_output=False`` is the course's first model (on the embedded data: 11% of the
    test scenes named exactly, against 43% with the defaults).
    """

    def __init__(
        self,
        vocab_size,
        embed_dim=256,
        hidden=256,
        encoder="small_cnn",
        image_size=96,
        cnn_width=32,
        image_as="input",
        fine_tune=0,
        encoder_weights="imagenet",
        cnn_blocks=3,
        cnn_top_convs=1,
        image_at_output=True,
        name="show_and_tell",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if image_as not in ("input", "state"):
            raise ValueError(f"image_as must be 'input' or 'state', got {image_as!r}")
        if encoder not in ("small_cnn", None, *APPLICATIONS):
            raise ValueError(
                f"encoder must be 'small_cnn', None (precomputed features) or one of "
                f"{', '.join(APPLICATIONS)}, got {encoder!r}"
            )
        if fine_tune and encoder not in APPLICATIONS:
            raise ValueError(
                f"fine_tune is for a pretrained encoder ({', '.join(APPLICATIONS)}); "
                f"small_cnn always trains end to end, got encoder={encoder!r}"
            )
        self.vocab_size, self.embed_dim, self.hidden = int(vocab_size), embed_dim, hidden
        self.encoder, self.image_size, self.cnn_width = encoder, image_size, cnn_width
        self.image_as, self.fine_tune, self.encoder_weights = image_as, fine_tune, encoder_weights
        self.cnn_blocks, self.cnn_top_convs, self.image_at_output = cnn_blocks, cnn_top_convs, bool(image_at_output)
        self.pretrained = encoder in APPLICATIONS
        if self.pretrained:
            self.cnn = build_encoder(encoder, weights=encoder_weights, input_size=image_size)
            self.fine_tuned_layers = unfreeze_top(self.cnn, fine_tune)
        else:
            self.cnn = small_cnn(image_size, cnn_width, blocks=cnn_blocks, top_convs=cnn_top_convs) if encoder else None
        # a small CNN's map is read cell by cell (what, and where); other encoders give vectors
        self.readout = GridReadout(name="grid_readout") if encoder == "small_cnn" else keras.layers.Flatten()
        self.project = keras.layers.Dense(embed_dim if image_as == "input" else 2 * hidden, name="image_projection")
        self.embed = keras.layers.Embedding(vocab_size, embed_dim, name="word_embedding")
        self.lstm = keras.layers.LSTM(hidden, return_sequences=True, return_state=True, name="decoder")
        if self.image_at_output:
            self.output_image = keras.layers.Dense(hidden, name="output_image")
            self.output_hidden = keras.layers.Dense(hidden, name="output_hidden")
        self.logits = keras.layers.Dense(vocab_size, name="word_logits")

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            embed_dim=self.embed_dim,
            hidden=self.hidden,
            encoder=self.encoder,
            image_size=self.image_size,
            cnn_width=self.cnn_width,
            image_as=self.image_as,
            fine_tune=self.fine_tune,
            encoder_weights=self.encoder_weights,
            cnn_blocks=self.cnn_blocks,
            cnn_top_convs=self.cnn_top_convs,
            image_at_output=self.image_at_output,
        )
        return config

    def read(self, images, training=False):
        """(B, S, S, 3) images (or (B, F) features) -> their readout (B, R)."""
        if self.cnn is None:
            x = images
        else:  # a pretrained encoder keeps its ImageNet batch statistics, even in training
            x = self.cnn(images, training=training and not self.pretrained)
        return self.readout(x)

    def encode(self, images, training=False):
        """(B, S, S, 3) images (or (B, F) features) -> (B, E) image embeddings."""
        return self.project(self.read(images, training))

    def word_logits(self, h, image):
        """LSTM outputs h (..., H) -> logits (..., V); image: the output layer's image term
        (..., H) with ``image_at_output``, else None."""
        return self.logits(h if image is None else ops.relu(self.output_hidden(h) + image))

    def call(self, images, image_index, tokens, training=False):
        """Teacher-forced logits (C, T - 1, V) for predicting ``tokens[:, 1:]``.

        image_index (C,): which image each caption describes; tokens (C, T) int.
        """
        read = self.read(images, training=training)
        image = ops.take(self.project(read), image_index, axis=0)
        at_output = ops.take(self.output_image(read), image_index, axis=0)[:, None, :] if self.image_at_output else None
        words = self.embed(tokens[:, :-1])
        if self.image_as == "input":
            out, _, _ = self.lstm(ops.concatenate([image[:, None, :], words], axis=1), training=training)
            out = out[:, 1:]  # the step that read the image predicts nothing
        else:
            h0, c0 = ops.split(image, 2, axis=-1)
            out, _, _ = self.lstm(words, initial_state=[h0, c0], training=training)
        return self.word_logits(out, at_output)

    def initial_state(self, images):
        """Decoder state (h, c), each (B, H), ready to read ``<start>``; with
        ``image_at_output`` (h, c, u), u (B, H) the output layer's image term."""
        read = self.read(images, training=False)
        image = self.project(read)
        if self.image_as == "state":
            h, c = ops.split(image, 2, axis=-1)
        else:
            zeros = ops.zeros((ops.shape(image)[0], self.hidden), dtype=image.dtype)
            _, (h, c) = self.lstm.cell(image, [zeros, zeros], training=False)
        return (h, c, self.output_image(read)) if self.image_at_output else (h, c)

    @compiled_step
    def step(self, tokens, state):
        """One decoding step for ``helpers.decoding``: tokens (B,), state (h, c) or (h, c, u)
        -> (log_probs (B, V), state)."""
        h, (h, c) = self.lstm.cell(self.embed(tokens), list(state[:2]), training=False)
        image = state[2] if self.image_at_output else None
        return ops.log_softmax(self.word_logits(h, image), axis=-1), (h, c, *state[2:])
