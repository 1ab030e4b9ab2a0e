"""Attention train step with every caption of each image vs. K of them, same images, one run.

    python bench/captions_per_image.py [--steps N] [--captions-per-image K] [--images-per-batch B]

An epoch has one step per B images either way (the CNN sees each image once), so the ratio
of the times per step is the ratio of the epochs' times. The decoder's work grows with the
captions in a batch (B x 5 or B x K, each unrolled over the data's longest caption), the
CNN's does not: the ratio says how much of a step the decoder was. Both sides train the
same model from the same initial weights on batches from ``helpers.pipeline.caption_pipeline``,
as ``helpers.training`` builds them. Prints a line per side and, last, a JSON object ending
with "ratio" (all captions' time per step / K captions').
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import helpers  # noqa: E402  (quiets TensorFlow first)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--captions-per-image", type=int, default=2)
    parser.add_argument("--images-per-batch", type=int, default=16, help="images per batch (the default's 16)")
    args = parser.parse_args()

    import keras

    from helpers.attention import ShowAttendTell
    from helpers.pipeline import caption_pipeline
    from helpers.teacher_forcing import make_train_step

    helpers.seed_everything(0)
    # a warm-up batch, then the timed ones
    pixels, vocab, tokens, captions_of, order = embedded_training_data(args.images_per_batch * (args.steps + 1))

    def time_steps(k):
        helpers.seed_everything(0)  # the same initial weights for both sides
        model = ShowAttendTell(len(vocab))
        batches = caption_pipeline(
            pixels, order, captions_of, tokens, args.images_per_batch, pad_to=tokens.shape[1], captions_per_image=k
        )
        step = make_train_step(model, keras.optimizers.Adam(1e-3))
        first, *timed = list(batches(order))
        step(*first)  # warm-up: builds weights, traces the graph
        start = time.perf_counter()
        for batch in timed:
            loss, _, _ = step(*batch)
        float(loss)  # wait for the last step to finish
        return (time.perf_counter() - start) / len(timed) * 1000, int(timed[0][2].shape[0])

    every_ms, every_captions = time_steps(0)
    some_ms, some_captions = time_steps(args.captions_per_image)
    padded = tokens.shape[1]
    print(f"attention train step, {args.images_per_batch} images a batch, {padded} tokens, {args.steps} steps")
    print(f"  every caption ({every_captions} a batch): {every_ms:.0f} ms per step")
    print(f"  {args.captions_per_image} per image ({some_captions} a batch): {some_ms:.0f} ms per step")
    print(
        json.dumps(
            {
                "images_per_batch": args.images_per_batch,
                "captions_per_image": args.captions_per_image,
                "every_caption_ms": round(every_ms, 1),
                "some_captions_ms": round(some_ms, 1),
                "ratio": round(every_ms / some_ms, 2),
            }
        )
    )


def embedded_training_data(n_images):
    """``n_images`` of the embedded dataset, drawn afresh, as ``helpers.training`` hands them to
    ``helpers.pipeline.caption_pipeline``: (pixels (N, S, S, 3), vocabulary, tokens (C, 30),
    {image row: caption rows}, the image rows in order)."""
    import numpy as np

    from helpers.data import load_flickr30k, load_image, make_mini_flickr
    from helpers.pipeline import captions_by_image
    from helpers.text import Vocabulary, encode_captions

    with tempfile.TemporaryDirectory() as tmp:
        df = load_flickr30k(make_mini_flickr(Path(tmp) / "mini", n_images=n_images, progress=False))
        images = df.drop_duplicates("image").reset_index(drop=True)
        pixels = np.stack([load_image(p) for p in images.path])
    vocab = Vocabulary(df.caption)
    tokens = encode_captions(vocab, df.caption, 30)
    captions_of = captions_by_image(df.image.map({name: i for i, name in enumerate(images.image)}).to_numpy())
    return pixels, vocab, tokens, captions_of, np.arange(len(images))


if __name__ == "__main__":
    main()
