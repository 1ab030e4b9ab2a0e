"""Show-and-Tell train step: compiled (tf.function) vs eager, same batches, one run.

    python bench/train_step.py [--steps N] [--images-per-batch N [N ...]] [--features F]

Each batch size is timed both ways. tf.function saves the Python work around each op, a
roughly fixed cost per step, so its gain is largest on small batches and shrinks as the
kernels (convolutions, LSTM matrix products), which both ways run alike, take over.
Prints a table and, as its last line, a JSON object ending with "ratio" (eager time per
step / compiled time per step) at the last batch size given: by default 32 images, the
command line's batch.
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
    parser.add_argument(
        "--images-per-batch",
        type=int,
        nargs="+",
        default=[4, 8, 16, 32],
        help="batch sizes to time, each image with its 5 captions (the last one is the headline)",
    )
    parser.add_argument(
        "--features",
        type=int,
        default=0,
        help="train on cached feature vectors of this size (the full-scale setting) instead of pixels",
    )
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from helpers.captioner import ShowAndTell
    from helpers.data import load_flickr30k, load_image, make_mini_flickr
    from helpers.teacher_forcing import make_train_step
    from helpers.text import Vocabulary, encode_captions

    helpers.seed_everything(0)
    largest = max(args.images_per_batch)
    with tempfile.TemporaryDirectory() as tmp:
        df = load_flickr30k(make_mini_flickr(Path(tmp) / "mini", n_images=largest * 2, progress=False))
        pixels = np.stack([load_image(p) for p in df.drop_duplicates("image").path])
    vocab = Vocabulary(df.caption)
    tokens = encode_captions(vocab, df.caption, 30)
    inputs = f"{args.features}-d features" if args.features else "96 px pixels through the small CNN"

    def time_step(n, name):
        images = (
            np.random.default_rng(0).normal(size=(n, args.features)).astype("float32") if args.features else pixels[:n]
        )
        batch = (tf.constant(images), tf.constant(np.repeat(np.arange(n), 5)), tf.constant(tokens[: 5 * n]))
        model = ShowAndTell(len(vocab), image_as="state", encoder=None if args.features else "small_cnn")
        step = make_train_step(model, keras.optimizers.Adam(1e-3))
        if name == "eager":
            step = step.python_function  # the same code, op by op
        step(*batch)  # warm-up: builds weights, traces the graph
        start = time.perf_counter()
        for _ in range(args.steps):
            loss, _, _ = step(*batch)
        float(loss)  # wait for the last step to finish
        return (time.perf_counter() - start) / args.steps * 1000

    print(f"Show and Tell train step, {inputs}, {args.steps} steps each (ms per step)")
    print(f"{'images':>7} {'captions':>9} {'compiled':>9} {'eager':>8} {'ratio':>6}")
    rows = []
    for n in args.images_per_batch:
        compiled, eager = time_step(n, "compiled"), time_step(n, "eager")
        rows.append(
            {
                "images_per_batch": n,
                "compiled_ms": round(compiled, 1),
                "eager_ms": round(eager, 1),
                "ratio": round(eager / compiled, 2),
            }
        )
        print(f"{n:>7} {5 * n:>9} {compiled:>9.0f} {eager:>8.0f} {eager / compiled:>6.2f}")
    print(json.dumps({"inputs": inputs, "rows": rows[:-1], **rows[-1]}))


if __name__ == "__main__":
    main()
