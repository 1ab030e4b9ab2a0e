"""helpers.pipeline.caption_pipeline: the tf.data input pipeline of teacher forcing, against a
plain NumPy assembly of the same batches."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    n_images = 11
    inputs = rng.normal(size=(n_images, 4, 4, 3)).astype("float32")
    captions_of, tokens, row = {}, [], 0
    for image in range(n_images):
        count = int(rng.integers(1, 4))  # images with different numbers of captions
        captions_of[image] = np.arange(row, row + count)
        for _ in range(count):
            length = int(rng.integers(3, 9))
            tokens.append(np.r_[1, rng.integers(4, 20, size=length - 2), 2, np.zeros(10 - length, int)])
        row += count
    return inputs, captions_of, np.array(tokens, np.int32)


def test_batches_hold_each_image_with_all_its_captions_padded_to_the_batch(toy):
    from helpers.pipeline import caption_pipeline

    inputs, captions_of, tokens = toy
    images = np.array([0, 2, 3, 5, 6, 7, 8, 9, 10])  # the training images' rows (1 and 4 held out)
    order = np.random.default_rng(1).permutation(len(images))
    batches = list(caption_pipeline(inputs, images, captions_of, tokens, batch_size=4)(order))
    assert len(batches) == 2  # 9 images in batches of 4: the last, smaller batch is dropped
    for k, (x, image_index, batch_tokens) in enumerate(batches):
        chosen = images[order[4 * k : 4 * k + 4]]
        np.testing.assert_array_equal(x.numpy(), inputs[chosen])
        rows = np.concatenate([captions_of[i] for i in chosen])
        expected_index = np.repeat(np.arange(4), [len(captions_of[i]) for i in chosen])
        np.testing.assert_array_equal(image_index.numpy(), expected_index)
        longest = (tokens[rows] != 0).sum(1).max()
        assert batch_tokens.shape == (len(rows), longest)  # the batch's longest, not the data's 10
        np.testing.assert_array_equal(batch_tokens.numpy(), tokens[rows, :longest])
        assert image_index.dtype.name == batch_tokens.dtype.name == "int32"


def test_a_fixed_length_pads_every_batch_to_it(toy):
    from helpers.pipeline import caption_pipeline

    inputs, captions_of, tokens = toy
    batches = caption_pipeline(inputs, np.arange(8), captions_of, tokens, batch_size=4, pad_to=12)(np.arange(8))
    assert [b[2].shape[1] for b in batches] == [12, 12]
    assert batches.element_spec[2].shape.as_list() == [None, 12]


def test_captions_by_image_equals_pandas_groupby():
    import pandas as pd

    from helpers.pipeline import captions_by_image

    caption_image = np.random.default_rng(0).integers(0, 40, size=300)
    ours = captions_by_image(caption_image)
    reference = pd.Series(caption_image).groupby(caption_image).indices
    assert list(ours) == sorted(int(i) for i in reference)
    assert all(np.array_equal(ours[i], reference[i]) for i in ours)


def test_captions_per_image_draws_that_many_of_each_image_anew_each_epoch_and_the_same_on_a_rerun(toy):
    from helpers.pipeline import caption_pipeline

    inputs, captions_of, tokens = toy
    images = np.arange(11)
    batches = caption_pipeline(inputs, images, captions_of, tokens, batch_size=11, pad_to=10, captions_per_image=2)

    def drawn(order):
        ((x, image_index, batch_tokens),) = list(batches(order))
        caption_rows = {tuple(t) for t in tokens.tolist()}  # the toy's captions are all distinct
        assert len(caption_rows) == len(tokens)
        picked = {}
        for position, row in zip(image_index.numpy(), batch_tokens.numpy().tolist()):
            image = images[order[position]]
            picked.setdefault(image, []).append(tokens.tolist().index(row))
        return {i: sorted(rows) for i, rows in picked.items()}

    first = drawn(np.random.default_rng(1).permutation(11))
    for image, rows in first.items():  # two of its own, or all it has when it has fewer
        assert len(rows) == min(2, len(captions_of[image])) and len(set(rows)) == len(rows)
        assert set(rows) <= set(captions_of[image].tolist())
    assert set(first) == set(range(11))  # every image is still seen
    assert drawn(np.random.default_rng(1).permutation(11)) == first  # the same order, the same draw (resume)
    draws = [drawn(np.random.default_rng(seed).permutation(11)) for seed in range(2, 8)]
    assert any(d != first for d in draws)  # other epochs, other captions


def test_caption_chunks_hold_each_image_with_all_its_captions_at_one_length():
    import pandas as pd

    from helpers.pipeline import caption_chunks
    from helpers.text import Vocabulary, encode_captions

    captions = pd.DataFrame(
        {
            "image": ["c.jpg", "a.jpg", "x.jpg", "b.jpg", "a.jpg", "c.jpg", "c.jpg"],  # x.jpg: not asked for
            "caption": ["a red star", "a blue ring", "a dog", "a tiny green cross on the left", "a ring", "c", "a c"],
        }
    )
    vocab = Vocabulary(captions.caption, min_count=1)
    names = ["a.jpg", "b.jpg", "c.jpg"]
    chunks = list(caption_chunks(names, captions, vocab, max_len=12, images_per_chunk=2))
    assert [(start, stop) for start, stop, *_ in chunks] == [(0, 2), (2, 3)]  # the last chunk is smaller
    seen = []
    for start, _, chunk, image_index, tokens in chunks:
        assert tokens.shape == (len(chunk), 12)  # every chunk padded to max_len: one trace
        assert [names[start + i] for i in image_index] == list(chunk.image)  # each caption points at its image
        own = encode_captions(vocab, chunk.caption, 12)  # padded to the chunk's longest
        np.testing.assert_array_equal(tokens, np.pad(own, ((0, 0), (0, 12 - own.shape[1]))))
        seen += list(chunk.index)
    assert sorted(seen) == [0, 1, 3, 4, 5, 6]  # every caption of the names once, none of x.jpg
