"""Training a captioner by teacher forcing: the masked loss and the compiled train step that
both captioners (``ShowAndTell``, ``ShowAttendTell``) share.

A captioner here is any Keras model called as ``model(images, image_index, tokens,
training=True)`` that returns logits (C, T - 1, V) for ``tokens[:, 1:]`` (C captions, each
pointing at one of the batch's images through ``image_index``) and may add penalties to
``model.losses``. The loss is backend-neutral (``keras.ops``); the train step is
TensorFlow's (``tf.GradientTape``, ``tf.function``), the one backend-specific piece.
"""

import keras
from keras import ops


def masked_loss_and_accuracy(targets, logits, pad_id=0):
    """Mean cross-entropy and accuracy over the non-``<pad>`` positions.

    targets (C, T') int, logits (C, T', V). Padding must not count: a caption of 8 words
    padded to 20 would otherwise be mostly a lesson in predicting ``<pad>``.
    """
    mask = ops.cast(ops.not_equal(targets, pad_id), logits.dtype)
    losses = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    count = ops.maximum(ops.sum(mask), 1.0)
    correct = ops.cast(
        ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), ops.cast(targets, "int32")), logits.dtype
    )
    return ops.sum(losses * mask) / count, ops.sum(correct * mask) / count


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
    import tensorflow as tf

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
