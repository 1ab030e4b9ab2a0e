"""The ``tf.data`` input pipeline of the captioners' teacher forcing: batches of images, each
with all its captions or a few drawn afresh each epoch, padded per batch, and their split
between replicas under ``tf.distribute``.

Shapes: N images in the dataset, B images in a batch, C captions in the batch, T tokens.
"""

import numpy as np


def captions_by_image(caption_image):
    """{image row: the rows of the captions that describe it}, from each caption's image row
    (C,) int; the captions of an image in their order, the images in ascending order."""
    caption_image = np.asarray(caption_image)
    order = np.argsort(caption_image, kind="stable")
    images, starts = np.unique(caption_image[order], return_index=True)
    return {int(i): rows for i, rows in zip(images, np.split(order, starts[1:]))}


def caption_chunks(names, captions, vocab, max_len, images_per_chunk=64):
    """Teacher forcing outside training: the images ``names`` ``images_per_chunk`` at a time,
    each with all its captions. Yields (start, stop: the chunk's positions in ``names``, its
    captions (rows of ``captions``, a DataFrame with ``image`` and ``caption``; rows of other
    images are ignored), image_index (C,) into the chunk, tokens (C, max_len) int32), every
    chunk padded to ``max_len``: one length, so a compiled pass is traced once."""
    from .text import encode_captions

    for start in range(0, len(names), images_per_chunk):
        local = {name: i for i, name in enumerate(names[start : start + images_per_chunk])}
        chunk = captions[captions.image.isin(local)]
        tokens = encode_captions(vocab, chunk.caption, max_len)
        tokens = np.pad(tokens, ((0, 0), (0, max_len - tokens.shape[1])))
        yield start, start + len(local), chunk, chunk.image.map(local).to_numpy(), tokens


def caption_pipeline(inputs, images, captions_of, tokens, batch_size, pad_to=None, captions_per_image=0):
    """The ``tf.data`` input pipeline of teacher forcing. Returns ``batches(order)``: a
    dataset of one epoch (it holds the epoch's inputs once more when listed), ``batch_size``
    images at a time in the given order (positions in ``images``; a last, smaller batch is
    dropped), each image with its captions, the captions padded to the **batch's**
    longest (not the data's: every padded step costs an LSTM step). Elements: (inputs
    (B, ...), image_index (C,) int32 into the batch's images, tokens (C, T_batch) int32).

    inputs: one row per image of the dataset; images: the training images' rows;
    captions_of: {image row: caption rows of ``tokens``}; tokens (N, T) padded with 0.
    pad_to: pad every batch to this length instead (a model that unrolls its steps in
    Python, like ``ShowAttendTell``, is traced once per length).
    captions_per_image: each epoch, each image brings only this many of its captions, drawn
    without replacement afresh each epoch (from ``order``: the same order, the same draw);
    0 brings them all. Fewer captions make a step cheaper for the decoder while the CNN still
    sees every image once an epoch.
    """
    import tensorflow as tf

    pixels = tf.constant(inputs[np.asarray(images)])

    def batches(order):
        rows = [captions_of[i] for i in images]  # images -> their captions -> their tokens
        if captions_per_image:
            rng = np.random.default_rng(np.asarray(order))  # the epoch's draw follows from its order
            rows = [
                r if len(r) <= captions_per_image else np.sort(rng.choice(r, captions_per_image, replace=False))
                for r in rows
            ]
        chosen = tokens[np.concatenate(rows)]
        captions = tf.RaggedTensor.from_nested_row_lengths(
            chosen[chosen != 0], [[len(r) for r in rows], (chosen != 0).sum(1)]
        )

        def assemble(positions):
            batch = tf.gather(captions, positions)  # (B, captions, tokens), ragged
            return (
                tf.gather(pixels, positions),
                tf.cast(batch.value_rowids(), tf.int32),
                batch.values.to_tensor(0, shape=[None, pad_to]),
            )

        return (
            tf.data.Dataset.from_tensor_slices(np.asarray(order)).batch(batch_size, drop_remainder=True).map(assemble)
        )

    return batches


def replica_batches(strategy, batch):
    """One batch as it is, or with several replicas one share of its images (and their captions) each."""
    n = strategy.num_replicas_in_sync
    if n == 1:
        return batch
    import tensorflow as tf

    inputs, image_index, tokens = (t.numpy() for t in batch)
    shares = []
    for part in np.array_split(np.arange(len(inputs)), n):
        mine = (image_index >= part[0]) & (image_index <= part[-1])  # captions come grouped by image
        shares.append((inputs[part], image_index[mine] - part[0], tokens[mine]))
    return tuple(
        strategy.experimental_distribute_values_from_function(
            lambda ctx, k=k: tf.constant(shares[ctx.replica_id_in_sync_group][k])
        )
        for k in range(3)
    )
