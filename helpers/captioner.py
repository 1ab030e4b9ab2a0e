"""Show and Tell (Vinyals et al., 2015): a CNN encodes the image, an LSTM writes the caption.

Shapes: B images, C captions in the batch (each points at one image), T tokens per padded
caption (``<start>`` ... ``<end>`` ``<pad>``...), E embedding size, H hidden size, V vocabulary.

As in the paper, the image embedding is the LSTM's **first input** (step -1), before
``<start>``; the output at that step is not scored. The alternative, the image as the
initial state (``image_as="state"``), is one option away. Training uses teacher forcing:
the LSTM reads the true previous word, and the loss ignores ``<pad>`` positions.

Fine-tuning (the tutorials' next step): with a ``keras.applications`` encoder inside the
model (``encoder="resnet50"``, ...) and ``fine_tune=N``, the encoder's top N weighted layers
train with the decoder; give ``make_train_step`` an ``encoder_optimizer`` with a smaller
learning rate so that the first, large decoder gradients do not wreck the ImageNet features.
"""
import keras
import tensorflow as tf

from .features import APPLICATIONS, build_encoder, small_cnn, unfreeze_top
from .text import pad_captions  # noqa: F401  (notebook 04 imports it from here)


class ShowAndTell(keras.Model):
    """images (B, S, S, 3) 0-255, or features (B, F) with ``encoder=None``.

    vocab_size: V. encoder: 'small_cnn' (trained end to end on pixels), None (the inputs
    are precomputed feature vectors, e.g. from ``helpers.features.extract_features``), or a
    ``keras.applications`` name from ``helpers.features.APPLICATIONS`` (pixels through that
    pretrained encoder, frozen but for its top ``fine_tune`` weighted layers; its batch
    normalisation always runs on stored statistics). encoder_weights: what
    ``build_encoder`` loads into it ('imagenet', None, or a weights file).
    """

    def __init__(self, vocab_size, embed_dim=256, hidden=256, encoder="small_cnn", image_size=96,
                 cnn_width=32, image_as="input", fine_tune=0, encoder_weights="imagenet", **kwargs):
        super().__init__(**kwargs)
        if image_as not in ("input", "state"):
            raise ValueError(f"image_as must be 'input' or 'state', got {image_as!r}")
        if encoder not in ("small_cnn", None, *APPLICATIONS):
            raise ValueError(f"encoder must be 'small_cnn', None (precomputed features) or one of "
                             f"{', '.join(APPLICATIONS)}, got {encoder!r}")
        if fine_tune and encoder not in APPLICATIONS:
            raise ValueError(f"fine_tune is for a pretrained encoder ({', '.join(APPLICATIONS)}); "
                             f"small_cnn always trains end to end, got encoder={encoder!r}")
        self.config = dict(vocab_size=int(vocab_size), embed_dim=embed_dim, hidden=hidden, encoder=encoder,
                           image_size=image_size, cnn_width=cnn_width, image_as=image_as, fine_tune=fine_tune,
                           encoder_weights=encoder_weights)
        self.pretrained = encoder in APPLICATIONS
        if self.pretrained:
            self.cnn = build_encoder(encoder, weights=encoder_weights, input_size=image_size)
            self.fine_tuned_layers = unfreeze_top(self.cnn, fine_tune)
        else:
            self.cnn = small_cnn(image_size, cnn_width) if encoder else None
        self.flatten = keras.layers.Flatten()  # keep *where* things are: no global pooling
        self.project = keras.layers.Dense(embed_dim if image_as == "input" else 2 * hidden, name="image_projection")
        self.embed = keras.layers.Embedding(vocab_size, embed_dim, name="word_embedding")
        self.lstm = keras.layers.LSTM(hidden, return_sequences=True, return_state=True, name="decoder")
        self.logits = keras.layers.Dense(vocab_size, name="word_logits")
        self.hidden = hidden

    def get_config(self):
        return dict(self.config)

    def encode(self, images, training=False):
        """(B, S, S, 3) images (or (B, F) features) -> (B, E) image embeddings."""
        if self.cnn is None:
            x = images
        else:  # a pretrained encoder keeps its ImageNet batch statistics, even in training
            x = self.cnn(images, training=training and not self.pretrained)
        return self.project(self.flatten(x))

    def call(self, images, image_index, tokens, training=False):
        """Teacher-forced logits (C, T - 1, V) for predicting ``tokens[:, 1:]``.

        image_index (C,): which image each caption describes; tokens (C, T) int.
        """
        image = tf.gather(self.encode(images, training=training), image_index)
        words = self.embed(tokens[:, :-1])
        if self.config["image_as"] == "input":
            out, _, _ = self.lstm(tf.concat([image[:, None, :], words], axis=1), training=training)
            out = out[:, 1:]  # the step that read the image predicts nothing
        else:
            h0, c0 = tf.split(image, 2, axis=-1)
            out, _, _ = self.lstm(words, initial_state=[h0, c0], training=training)
        return self.logits(out)

    def initial_state(self, images):
        """Decoder state (h, c), each (B, H), ready to read ``<start>``."""
        image = self.encode(images, training=False)
        if self.config["image_as"] == "state":
            h0, c0 = tf.split(image, 2, axis=-1)
            return (h0, c0)
        zeros = tf.zeros((tf.shape(image)[0], self.hidden), image.dtype)
        _, (h, c) = self.lstm.cell(image, [zeros, zeros], training=False)
        return (h, c)

    @tf.function(reduce_retracing=True)
    def step(self, tokens, state):
        """One decoding step for ``helpers.decoding``: tokens (B,), state (h, c) -> (log_probs (B, V), state)."""
        h, (h, c) = self.lstm.cell(self.embed(tokens), list(state), training=False)
        return tf.nn.log_softmax(self.logits(h)), (h, c)


def masked_loss_and_accuracy(targets, logits, pad_id=0):
    """Mean cross-entropy and accuracy over the non-``<pad>`` positions.

    targets (C, T') int, logits (C, T', V). Padding must not count: a caption of 8 words
    padded to 20 would otherwise be mostly a lesson in predicting ``<pad>``.
    """
    mask = tf.cast(tf.not_equal(targets, pad_id), logits.dtype)
    losses = tf.keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    count = tf.maximum(tf.reduce_sum(mask), 1.0)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=targets.dtype), targets), logits.dtype)
    return tf.reduce_sum(losses * mask) / count, tf.reduce_sum(correct * mask) / count


def trainable_parts(model, encoder_apart):
    """(decoder variables, encoder variables): with ``encoder_apart`` the trainable variables of
    ``model.cnn`` (a fine-tuned encoder, with an optimizer of its own) apart from the rest; else
    every trainable variable in the first list."""
    encoder = list(model.cnn.trainable_variables) if encoder_apart else []
    ids = {id(v) for v in encoder}
    return [v for v in model.trainable_variables if id(v) not in ids], encoder


def make_train_step(model, optimizer, clip_norm=5.0, replicas=1, input_signature=None, encoder_optimizer=None):
    """A compiled train step: (images, image_index, tokens) -> (loss, accuracy, gradient norm).

    The loss returned is the masked cross-entropy; the gradient also includes any penalty the
    model adds in its call (``model.losses``, e.g. attention's doubly stochastic term).

    Gradients are clipped by their global norm (notebook 02) before the optimizer sees them.
    replicas: under tf.distribute the optimizer *sums* the replicas' gradients, so each
    replica's loss is divided by their number (the clipping is then per replica).
    input_signature: the (images, image_index, tokens) TensorSpecs, with None for the sizes
    that change from batch to batch, so that the step is traced once.
    encoder_optimizer: updates the trainable variables of ``model.cnn`` (a fine-tuned
    encoder) instead of ``optimizer``, e.g. at a tenth of its learning rate; the clipping
    still takes the global norm over all the gradients.
    """

    @tf.function(reduce_retracing=True, input_signature=input_signature)
    def train_step(images, image_index, tokens):
        with tf.GradientTape() as tape:
            logits = model(images, image_index, tokens, training=True)
            loss, accuracy = masked_loss_and_accuracy(tokens[:, 1:], logits)
            objective = loss + tf.add_n(model.losses) if model.losses else loss  # e.g. attention's penalty
            scaled = objective / replicas
        # (listed after the call, which builds the weights on the first trace)
        decoder_vars, encoder_vars = trainable_parts(model, encoder_optimizer is not None)
        grads = tape.gradient(scaled, decoder_vars + encoder_vars)
        # the embedding's gradient comes as slices, one per token read; a word read twice has two,
        # and their norms would add up wrongly: sum them into one dense gradient first
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
        grads, norm = tf.clip_by_global_norm(grads, clip_norm)
        optimizer.apply(grads[: len(decoder_vars)], decoder_vars)
        if encoder_vars:
            encoder_optimizer.apply(grads[len(decoder_vars) :], encoder_vars)
        return loss, accuracy, norm

    return train_step
