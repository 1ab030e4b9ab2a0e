"""Show and Tell at Flickr30k scale: an epoch on cached features vs an epoch that fine-tunes
the encoder's top layers, timed side by side in one run, with peak accelerator memory.

    python bench/full_scale.py [--captions FILE] [--encoder resnet50] [--fine-tune 10] [--steps N]

The README's full-scale figures come from here. The captions are real: the Karpathy training
split of ``--captions`` (default: ../shared/data's 145,000 Flickr30k captions, else the
5,000 test captions shipped in data/), read by helpers.data, with helpers.text's vocabulary
(min_count 5) and the command line's 30 tokens. The images are random pixels: a step costs
the same whatever they show, and timing needs no ImageNet weights. The model is the course's
own ``helpers.captioner.ShowAndTell`` as the command line builds it (image as the initial
state, E = H = 256; with ``--fine-tune`` the ``keras.applications`` encoder inside, its top
layers unfrozen by ``helpers.features.unfreeze_top``). It is written in ``keras.ops``, so it
runs on any Keras backend: TensorFlow, as the course does, or JAX (``KERAS_BACKEND=jax``)
where TensorFlow cannot be installed. Only the train step differs from the command line's:
Keras's own ``train_on_batch`` (masked cross-entropy, Adam, global-norm clipping at 5),
compiled by whichever backend runs, with one optimizer for both parts (the command line
gives the encoder its own, at a tenth of the rate, which costs the same). Each way runs ``--steps`` steps of 32
images with their 5 captions after a warm-up, extrapolated to an epoch. Also timed: the
encoder alone on batches of 128 (feature extraction) and decoding 500 x 375 JPEGs on all
CPU cores. Last line: a JSON object ending with "ratio" (fine-tuned epoch / feature epoch).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import helpers  # noqa: E402, F401  (quiets TensorFlow first)

warnings.filterwarnings("ignore", message=".*repaired")  # the real file's known HTML entities

CAPTIONS_PER_IMAGE = 5


def real_captions(path, max_len, min_count=5):
    """(tokens (images, 5, max_len) int32, vocabulary size, training images, captions)."""
    import numpy as np

    from helpers.data import read_captions
    from helpers.text import Vocabulary, encode_captions

    df = read_captions(path)
    train = set((ROOT / "data" / "karpathy_split" / "train_images.txt").read_text().split())
    if df.image.isin(train).sum() >= 1000:  # the full file: keep its training split
        df = df[df.image.isin(train)]
    df = df[df.groupby("image").caption.transform("size") == CAPTIONS_PER_IMAGE].sort_values(["image", "caption_id"])
    vocab = Vocabulary(df.caption, min_count=min_count)
    tokens = encode_captions(vocab, df.caption, max_len)  # as the command line cuts them
    tokens = np.pad(tokens, ((0, 0), (0, max_len - tokens.shape[1])))  # one length: one compiled step
    return tokens.reshape(-1, CAPTIONS_PER_IMAGE, max_len), len(vocab), df.image.nunique(), len(df)


def teaching(captioner):
    """The course's captioner under Keras's own training machinery (``train_on_batch``, compiled
    by the backend: a tf.function, a jax.jit, ...): x = (images, image_index, tokens (C, T)),
    y = tokens[:, 1:], weighted 0 at <pad>. Adam with global-norm clipping at 5."""
    import keras

    class Teaching(keras.Model):
        def __init__(self, model):
            super().__init__()
            self.captioner = model

        def call(self, inputs, training=False):
            images, image_index, tokens = inputs
            return self.captioner(images, image_index, tokens, training=training)  # logits for tokens[:, 1:]

    model = Teaching(captioner)
    model.compile(
        keras.optimizers.Adam(1e-3, global_clipnorm=5.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def time_steps(model, images, tokens, steps, rng):
    """Seconds per train step, after a warm-up that compiles."""
    import numpy as np

    image_index = np.repeat(np.arange(len(images)), CAPTIONS_PER_IMAGE)

    def step():
        batch = tokens[rng.choice(len(tokens), len(images), replace=False)].reshape(-1, tokens.shape[-1])
        targets = batch[:, 1:]
        weights = (targets != 0).astype("float32")  # <pad> not scored
        return model.train_on_batch((images, image_index, batch), targets, sample_weight=weights)

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss)  # a float: the last step has finished
    return (time.perf_counter() - start) / steps


def peak_memory_gb():
    """Peak accelerator memory so far (GB), or None on a CPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats["peak_bytes_in_use"] / 1e9 if "peak_bytes_in_use" in stats else None
    if backend == "tensorflow":
        import tensorflow as tf

        return (
            tf.config.experimental.get_memory_info("GPU:0")["peak"] / 1e9
            if tf.config.list_physical_devices("GPU")
            else None
        )
    if backend == "torch":
        import torch

        return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None
    return None


def device_name():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def jpeg_decoding_rate(size, count=256):
    """Images per second that OpenCV decodes and resizes, 500 x 375 JPEGs, all cores."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(count):  # smooth random scenes: about the bytes of a photo
            image = cv2.resize(
                rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), (500, 375), interpolation=cv2.INTER_CUBIC
            )
            image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
            paths.append(os.path.join(tmp, f"{i}.jpg"))
            cv2.imwrite(paths[-1], image)

        def load(path):
            return cv2.resize(cv2.imread(path), (size, size), interpolation=cv2.INTER_AREA)

        with ThreadPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(load, paths[:32]))
            start = time.perf_counter()
            list(pool.map(load, paths))
            return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = ROOT.parent / "shared" / "data" / "flickr30k" / "captions_karpathy.token"
    parser.add_argument(
        "--captions",
        type=Path,
        default=shared if shared.is_file() else ROOT / "data" / "captions" / "flickr30k_karpathy_test.token",
    )
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--fine-tune", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images-per-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--max-len", type=int, default=30)
    parser.add_argument(
        "--full-dataset-images", type=int, default=31783, help="Flickr30k's images, for the extraction time"
    )
    args = parser.parse_args()

    import keras
    import numpy as np

    from helpers.captioner import ShowAndTell
    from helpers.features import build_encoder

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    tokens, vocab_size, n_images, n_captions = real_captions(args.captions, args.max_len)
    steps_per_epoch = n_images // args.images_per_batch
    print(
        f"{keras.backend.backend()} on {device_name()}; {n_captions:,} training captions of {n_images:,} images "
        f"({args.captions.name}), vocabulary {vocab_size:,}, {steps_per_epoch:,} steps of {args.images_per_batch} "
        f"images per epoch",
        flush=True,
    )

    encoder = build_encoder(args.encoder, weights=None, input_size=args.image_size)
    feature_dim = encoder.output_shape[-1]
    pixels = rng.integers(0, 256, (args.images_per_batch, args.image_size, args.image_size, 3)).astype("float32")
    big = rng.integers(0, 256, (128, args.image_size, args.image_size, 3)).astype("float32")
    encoder.predict_on_batch(big)
    start = time.perf_counter()
    for _ in range(5):
        np.asarray(encoder.predict_on_batch(big))
    extract_rate = 5 * 128 / (time.perf_counter() - start)
    decode_rate = jpeg_decoding_rate(args.image_size)
    print(
        f"feature extraction: {args.encoder} encodes {extract_rate:,.0f} images/s; OpenCV decodes and resizes "
        f"{decode_rate:,.0f} JPEGs/s on {os.cpu_count()} cores",
        flush=True,
    )

    # the command line's two ways: a decoder on cached features, and the encoder inside, its top layers trained
    on_features = ShowAndTell(vocab_size, encoder=None, image_as="state")
    feature_step = time_steps(
        teaching(on_features),
        rng.normal(size=(args.images_per_batch, feature_dim)).astype("float32"),
        tokens,
        args.steps,
        rng,
    )
    feature_memory = peak_memory_gb()
    print(
        f"on cached features: {feature_step * 1000:.1f} ms/step, {feature_step * steps_per_epoch:.0f} s/epoch",
        flush=True,
    )

    tuned = ShowAndTell(
        vocab_size,
        encoder=args.encoder,
        image_size=args.image_size,
        image_as="state",
        fine_tune=args.fine_tune,
        encoder_weights=None,
    )
    names = tuned.fine_tuned_layers
    tuned_step = time_steps(teaching(tuned), pixels, tokens, args.steps, rng)
    tuned_memory = peak_memory_gb()
    print(
        f"fine-tuning {len(names)} layers of {args.encoder} ({names[0]} ... {names[-1]}): "
        f"{tuned_step * 1000:.1f} ms/step, "
        f"{tuned_step * steps_per_epoch:.0f} s/epoch",
        flush=True,
    )

    def gb(value):
        return None if value is None else round(value, 2)

    print(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "device": device_name(),
                "encoder": args.encoder,
                "image_size": args.image_size,
                "train_captions": n_captions,
                "vocabulary": vocab_size,
                "steps_per_epoch": steps_per_epoch,
                "extract_images_per_s": round(extract_rate),
                "jpeg_decode_images_per_s": round(decode_rate),
                "extract_full_dataset_s": round(args.full_dataset_images / min(extract_rate, decode_rate)),
                "feature_step_ms": round(feature_step * 1000, 1),
                "feature_epoch_s": round(feature_step * steps_per_epoch),
                "feature_peak_gb": gb(feature_memory),
                "fine_tune_layers": len(names),
                "fine_tune_step_ms": round(tuned_step * 1000, 1),
                "fine_tune_epoch_s": round(tuned_step * steps_per_epoch),
                "fine_tune_peak_gb": gb(tuned_memory),
                "ratio": round(tuned_step / feature_step, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
