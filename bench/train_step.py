"""Show-and-Tell train step: compiled (tf.function) vs eager, same batches, one run.

    python bench/train_step.py [--steps N] [--images-per-batch N]

Prints both timings and, as its last line, a JSON object ending with "ratio"
(eager time per step / compiled time per step).
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
    parser.add_argument("--images-per-batch", type=int, default=32)
    parser.add_argument("--features", type=int, default=0,
                        help="train on cached feature vectors of this size (the full-scale setting) instead of pixels")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from helpers.captioner import ShowAndTell, make_train_step
    from helpers.data import load_flickr30k, load_image, make_mini_flickr
    from helpers.text import Vocabulary
    from helpers.train import encode_captions

    helpers.seed_everything(0)
    with tempfile.TemporaryDirectory() as tmp:
        df = load_flickr30k(make_mini_flickr(Path(tmp) / "mini", n_images=args.images_per_batch * 2, progress=False))
        pixels = np.stack([load_image(p) for p in df.drop_duplicates("image").path])
    vocab = Vocabulary(df.caption)
    tokens = encode_captions(vocab, df.caption, 30)
    n = args.images_per_batch
    images = np.random.default_rng(0).normal(size=(n, args.features)).astype("float32") if args.features else pixels[:n]
    batch = (tf.constant(images), tf.constant(np.repeat(np.arange(n), 5)), tf.constant(tokens[: 5 * n]))

    timings = {}
    for name in ("compiled", "eager"):
        model = ShowAndTell(len(vocab), image_as="state", encoder=None if args.features else "small_cnn")
        optimizer = keras.optimizers.Adam(1e-3)
        step = make_train_step(model, optimizer)
        if name == "eager":
            step = step.python_function  # the same code, op by op
        step(*batch)  # warm-up: builds weights, traces the graph
        start = time.perf_counter()
        for _ in range(args.steps):
            loss, _, _ = step(*batch)
        float(loss)  # wait for the last step to finish
        timings[name] = (time.perf_counter() - start) / args.steps
    inputs = f"{args.features}-d features" if args.features else "96 px pixels through the small CNN"
    print(f"{n} images ({inputs}), {5 * n} captions per step: compiled {timings['compiled'] * 1000:.0f} ms, "
          f"eager {timings['eager'] * 1000:.0f} ms")
    print(json.dumps({"images_per_batch": n, "inputs": inputs, "compiled_ms": round(timings["compiled"] * 1000, 1),
                      "eager_ms": round(timings["eager"] * 1000, 1), "ratio": round(timings["eager"] / timings["compiled"], 2)}))


if __name__ == "__main__":
    main()
