"""Show and Tell (Vinyals et al., 2015): a CNN encodes the image, an LSTM writes the caption.

Shapes: B images, C captions in the batch (each points at one image), T tokens per padded
caption (``<start>`` ... ``<end>`` ``<pad>``...), E embedding size, H hidden size, V vocabulary.

As in the paper, the image embedding is the LSTM's **first input** (step -1), before
``<start>``; the output at that step is not scored. The alternative, the image as the
initial state (``image_as="state"``), is one option away. Training uses teacher forcing:
the LSTM reads the true previous word, and the loss ignores ``<pad>`` positions
(``helpers.teacher_forcing``).

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
    ``build_encoder`` loads into it ('imagenet', None, or a weights file).
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
        self.pretrained = encoder in APPLICATIONS
        if self.pretrained:
            self.cnn = build_encoder(encoder, weights=encoder_weights, input_size=image_size)
            self.fine_tuned_layers = unfreeze_top(self.cnn, fine_tune)
        else:
            self.cnn = small_cnn(image_size, cnn_width) if encoder else None
        # a small CNN's map is read cell by cell (what, and where); other encoders give vectors
        self.readout = GridReadout(name="grid_readout") if encoder == "small_cnn" else keras.layers.Flatten()
        self.project = keras.layers.Dense(embed_dim if image_as == "input" else 2 * hidden, name="image_projection")
        self.embed = keras.layers.Embedding(vocab_size, embed_dim, name="word_embedding")
        self.lstm = keras.layers.LSTM(hidden, return_sequences=True, return_state=True, name="decoder")
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
        )
        return config

    def encode(self, images, training=False):
        """(B, S, S, 3) images (or (B, F) features) -> (B, E) image embeddings."""
        if self.cnn is None:
            x = images
        else:  # a pretrained encoder keeps its ImageNet batch statistics, even in training
            x = self.cnn(images, training=training and not self.pretrained)
        return self.project(self.readout(x))

    def call(self, images, image_index, tokens, training=False):
        """Teacher-forced logits (C, T - 1, V) for predicting ``tokens[:, 1:]``.

        image_index (C,): which image each caption describes; tokens (C, T) int.
        """
        image = ops.take(self.encode(images, training=training), image_index, axis=0)
        words = self.embed(tokens[:, :-1])
        if self.image_as == "input":
            out, _, _ = self.lstm(ops.concatenate([image[:, None, :], words], axis=1), training=training)
            out = out[:, 1:]  # the step that read the image predicts nothing
        else:
            h0, c0 = ops.split(image, 2, axis=-1)
            out, _, _ = self.lstm(words, initial_state=[h0, c0], training=training)
        return self.logits(out)

    def initial_state(self, images):
        """Decoder state (h, c), each (B, H), ready to read ``<start>``."""
        image = self.encode(images, training=False)
        if self.image_as == "state":
            h0, c0 = ops.split(image, 2, axis=-1)
            return (h0, c0)
        zeros = ops.zeros((ops.shape(image)[0], self.hidden), dtype=image.dtype)
        _, (h, c) = self.lstm.cell(image, [zeros, zeros], training=False)
        return (h, c)

    @compiled_step
    def step(self, tokens, state):
        """One decoding step for ``helpers.decoding``: tokens (B,), state (h, c) -> (log_probs (B, V), state)."""
        h, (h, c) = self.lstm.cell(self.embed(tokens), list(state), training=False)
        return ops.log_softmax(self.logits(h), axis=-1), (h, c)
