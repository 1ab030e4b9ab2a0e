"""Image encoders and an on-disk feature cache.

``build_encoder(name)`` gives a Keras model that takes RGB images with values 0-255,
shape (B, S, S, 3), does its own preprocessing, and returns one feature vector per image
(B, F), or the last convolutional map (B, H', W', F) with ``spatial=True`` (for attention).

``extract_features(encoder, paths)`` runs it over image files through ``tf.data`` with a
progress bar, caching the results on disk in shards. Each shard is written to a temporary
file and renamed into place, so a run killed at any moment (even ``kill -9``) leaves only
complete shards; the next run loads those and computes the rest.
"""

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from . import PROJECT_ROOT, shown_path, stale_temporaries, write_atomic


def default_cache_dir():
    """``$COURSE_FEATURE_CACHE`` (e.g. a scratch disk at full scale), else data/cache/features."""
    return Path(os.environ.get("COURSE_FEATURE_CACHE") or PROJECT_ROOT / "data" / "cache" / "features")


# name: (keras.applications constructor, its preprocess_input module or None if built in, default size)
APPLICATIONS = {
    "mobilenet_v3_small": ("MobileNetV3Small", None, 224),
    "resnet50": ("ResNet50", "resnet50", 224),
    "efficientnet_b0": ("EfficientNetB0", None, 224),
    "vgg16": ("VGG16", "vgg16", 224),  # the 4,096-d fc2 layer, as in the "Show and Tell" tutorials
}
ENCODERS = (*APPLICATIONS, "small_cnn")


class EncoderUnavailableError(RuntimeError):
    """Pretrained weights could not be had (offline, or a failed download)."""


def downloads_allowed():
    """False when ``COURSE_OFFLINE`` is set (``make test`` sets it): tests never download."""
    return os.environ.get("COURSE_OFFLINE", "") in ("", "0")


@contextlib.contextmanager
def _weights_from_disk_only():
    """Within this block Keras may load weight files already on disk but download nothing."""
    from keras.src.utils import file_utils

    real = file_utils.get_file

    def get_file(fname=None, origin=None, cache_subdir="datasets", cache_dir=None, **kwargs):
        home = cache_dir or os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
        if not os.path.exists(os.path.join(home, cache_subdir, fname or "")):
            raise Exception(
                f"{fname} is not in {os.path.join(home, cache_subdir)} and downloads are off (COURSE_OFFLINE)"
            )
        return real(fname, origin, cache_subdir=cache_subdir, cache_dir=cache_dir, **kwargs)

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = real


def small_cnn(input_size=96, width=32, name="small_cnn", blocks=4, top_convs=0):
    """A small from-scratch CNN: a stride-1 "stem" convolution at full resolution, then
    ``blocks`` stride-2 conv blocks, each with batch normalisation, then ``top_convs``
    stride-1 3 x 3 blocks at the last resolution.

    (B, S, S, 3) in 0-255 -> the map (B, S/2**blocks, S/2**blocks, C), C = 4 * width with 3
    or 4 blocks. Needs no download; the captioner trains it together with the decoder.
    On the embedded data the stem is what lets it learn shapes within a few epochs: the
    embedded shapes are 12 to 28 px wide, and a first convolution with stride 2 sees too
    little of their outlines (a shape classifier on it stayed near chance for 3 epochs).
    Each cell of the map sees 2**(blocks + 1) + 1 px (3 blocks: 17 px, less than a large
    shape's 23 to 28), and each of ``top_convs`` widens that by 2**(blocks + 1) px (3 blocks
    and one: 33 px, a whole shape seen by each cell of a 12 x 12 grid).
    """
    import keras

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    if not 1 <= blocks <= 4:
        raise ValueError(f"blocks must be 1 to 4, got {blocks}")
    # momentum 0.9: the moving statistics follow the weights within about 10 steps; with Keras's
    # 0.99 a model scored after its first epochs normalised with statistics of ~100 steps ago
    x = keras.layers.Conv2D(width // 2, 3, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn_stem")(x)
    x = keras.layers.ReLU(name="relu_stem")(x)

    def block(x, filters, strides, prefix, n):  # layers {prefix}conv{n}, {prefix}bn{n}, {prefix}relu{n}
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{prefix}conv{n}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{prefix}bn{n}")(x)
        return keras.layers.ReLU(name=f"{prefix}relu{n}")(x)

    for i, filters in enumerate([width, width * 2, width * 4, width * 4][:blocks]):
        x = block(x, filters, 2, "", i + 1)
    for i in range(top_convs):  # same resolution, a wider view
        x = block(x, x.shape[-1], 1, "top_", i + 1)
    return keras.Model(inputs, x, name=name)


def coordinate_channels(grid):
    """(G, G, 2): x and y of every cell in [-1, 1], so that features know where they are."""
    ys, xs = np.meshgrid(np.linspace(-1, 1, grid), np.linspace(-1, 1, grid), indexing="ij")
    return np.stack([xs, ys], axis=-1).astype("float32")


def with_coordinates(x):
    """A feature map (B, G, G, C) -> (B, G, G, C + 2): every cell with its ``coordinate_channels``."""
    from keras import ops

    coords = ops.zeros_like(x[..., :1]) + ops.cast(coordinate_channels(int(x.shape[1])), x.dtype)
    return ops.concatenate([x, coords], axis=-1)


def build_encoder(name, weights="imagenet", input_size=None, spatial=False):
    """A Keras encoder model by name (see ``ENCODERS``).

    name: 'mobilenet_v3_small', 'resnet50', 'efficientnet_b0', 'vgg16' (keras.applications,
    with their own preprocessing) or 'small_cnn' (from scratch, no download).
    weights: 'imagenet', None (random initialisation), or a path to a weights file.
    input_size: side S of the square input; defaults to 224 (96 for small_cnn).
    spatial: return the last convolutional map (B, H', W', F) instead of the pooled (B, F).
    The model's ``course_key`` attribute identifies encoder, weights and options for caches.

    Raises ``EncoderUnavailableError`` in one sentence when ImageNet weights cannot be
    downloaded (or are not on disk while ``COURSE_OFFLINE`` is set, as in ``make test``),
    and ``ValueError`` for an unknown name or an impossible combination.
    """
    import keras

    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    if name == "vgg16" and spatial:
        raise ValueError(
            "vgg16 gives the 4,096-d fc2 vector; for a spatial map use resnet50, efficientnet_b0 or mobilenet_v3_small"
        )
    if name == "small_cnn":
        backbone = small_cnn(input_size or 96)
        if weights not in (None, "imagenet"):
            backbone.load_weights(weights)
        out = backbone.output if spatial else keras.layers.GlobalAveragePooling2D()(backbone.output)
        model = keras.Model(backbone.input, out, name="small_cnn_encoder")
    else:
        constructor, preprocess_module, default_size = APPLICATIONS[name]
        size = input_size or default_size
        if name == "vgg16" and size != 224:
            raise ValueError("vgg16's fc2 layer needs 224 x 224 inputs")
        try:
            with contextlib.nullcontext() if downloads_allowed() else _weights_from_disk_only():
                backbone = getattr(keras.applications, constructor)(
                    input_shape=(size, size, 3),
                    weights="imagenet" if weights == "imagenet" else None,  # a file loads below
                    include_top=name == "vgg16",  # fc2 sits in VGG's top
                )
        except Exception as err:  # keras raises a bare Exception when the download fails
            if not downloads_allowed():
                raise EncoderUnavailableError(
                    f"the ImageNet weights of {name} are not on this machine and downloads are off "
                    "(COURSE_OFFLINE is set, as in make test); unset it to download them, or use "
                    "build_encoder('small_cnn')"
                ) from None
            raise EncoderUnavailableError(
                f"could not get the ImageNet weights of {name} ({str(err).splitlines()[0][:120]}); "
                f"connect to the internet once, or use build_encoder('small_cnn'), which needs no download"
            ) from None
        if weights not in (None, "imagenet"):
            backbone.load_weights(weights)
        inputs = keras.Input((size, size, 3), name="image")
        x = inputs
        if preprocess_module:
            x = getattr(keras.applications, preprocess_module).preprocess_input(x)
        if name == "vgg16":
            features = keras.Model(backbone.input, backbone.get_layer("fc2").output)(x)
        else:
            features = backbone(x)
            if not spatial:
                features = keras.layers.GlobalAveragePooling2D()(features)
        model = keras.Model(inputs, features, name=f"{name}_encoder")
    model.course_key = _model_key(name, model, spatial)
    return model


def unfreeze_top(encoder, layers):
    """Fine-tuning: freeze ``encoder`` but for its last ``layers`` layers that hold weights.

    Batch normalisation stays frozen (and so runs on its stored statistics): a caption batch
    of a few dozen images would spoil the ImageNet ones. ``layers=0`` freezes everything.
    Returns the names of the layers left trainable, bottom to top.
    """
    import keras

    if layers < 0:
        raise ValueError(f"layers must be 0 or more, got {layers}")

    def leaves(model):  # nested models (the keras.applications backbone) opened up, in order
        for layer in model.layers:
            yield from leaves(layer) if isinstance(layer, keras.Model) else [layer]

    encoder.trainable = True  # (a frozen container would hide its layers' weights from training)
    weighted = [layer for layer in leaves(encoder) if layer.weights]
    chosen = [layer for layer in weighted if not isinstance(layer, keras.layers.BatchNormalization)]
    chosen = chosen[-layers:] if layers else []
    for layer in weighted:
        layer.trainable = any(layer is c for c in chosen)
    return [layer.name for layer in chosen]


def _architecture(model):
    """Every layer's class and configuration, nested models opened up, without the layer names
    (Keras numbers them per session): two encoders that differ only in a weightless layer
    (average vs max pooling) differ here."""
    import keras

    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layers.append(_architecture(layer))
        else:
            config = {k: v for k, v in layer.get_config().items() if k != "name"}
            layers.append([type(layer).__name__, config])
    return layers


def _model_key(name, model, spatial):
    """``name``-size-spatial|pooled-digest, the digest of the architecture and the weights."""
    digest = hashlib.sha1(json.dumps(_architecture(model), sort_keys=True, default=str).encode())
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    size = model.input_shape[1]
    return f"{name}-{size}px-{'spatial' if spatial else 'pooled'}-{digest.hexdigest()[:12]}"


def _image_key(path):
    st = os.stat(path)
    return f"{Path(path).name}:{st.st_size}:{st.st_mtime_ns}"


def _decode(path, size):
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), (size, size), antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def _compute(encoder, paths, batch_size, size, bar):
    import tensorflow as tf

    data = (
        tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
        .map(lambda p: _decode(p, size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    out = []
    try:
        for batch in data:
            out.append(np.asarray(encoder(batch, training=False)))
            bar.update(len(batch))
    except tf.errors.InvalidArgumentError as err:
        from .data import load_image

        for p in paths:  # find the bad file and say which: never a bare TF traceback
            load_image(p)  # not an image at all
            try:
                _decode(p, size)
            except tf.errors.InvalidArgumentError:  # an image, in a format TensorFlow does not read
                raise ValueError(
                    f"image file {p} is not a JPEG, PNG, GIF or BMP file, which are what TensorFlow decodes "
                    "(convert it, e.g. with OpenCV)"
                ) from None
        raise ValueError(f"the images could not be decoded ({str(err).splitlines()[0][:200]})") from None
    return np.concatenate(out).astype(np.float32)


def extract_features(
    encoder, paths, cache_dir="default", batch_size=32, shard_size=256, progress=True, dtype="float32"
):
    """Features of the images at ``paths`` (in that order) as an array (N, ...) of ``dtype``.

    dtype: what is kept in memory and on disk: 'float16' halves both, which spatial grids
    need at scale (Flickr30k's 31,783 ResNet50 grids of 7 x 7 x 2048: 6.4 GB instead of 12.8).

    encoder: a model from ``build_encoder`` (any Keras model taking (B, S, S, 3) in 0-255
    works; give it a ``course_key`` attribute to share its cache between sessions).
    cache_dir: where shards go: "default" for ``default_cache_dir()``, None for no cache. A
    shard is keyed by the encoder's key (its architecture and weights) and the name, size and
    modification time of each of its images, so a changed image or encoder never reuses stale
    features. A shard that is unreadable, or not of the shape and type expected, is computed
    again with a warning. A missing, empty or corrupt image, or one TensorFlow cannot decode,
    raises ``ValueError`` naming it.
    """
    from tqdm.auto import tqdm

    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("no image paths given")
    for p in paths:
        if not os.path.isfile(p):
            raise ValueError(f"image file {p} does not exist")
    size = int(encoder.input_shape[1])
    key = getattr(encoder, "course_key", None) or _model_key(encoder.name, encoder, len(encoder.output_shape) == 4)
    if cache_dir == "default":
        cache_dir = default_cache_dir()
    folder = Path(cache_dir) / key if cache_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for tmp in stale_temporaries(folder):  # shards a killed run was writing
            tmp.unlink(missing_ok=True)
    shape = tuple(encoder.output_shape[1:])

    chunks = [paths[i : i + shard_size] for i in range(0, len(paths), shard_size)]
    results = [None] * len(chunks)
    bar = tqdm(total=len(paths), desc=f"Features ({key.split('-')[0]})", unit="img", disable=not progress)
    for i, chunk in enumerate(chunks):
        shard = None
        if folder is not None:
            digest = hashlib.sha1("\n".join(_image_key(p) for p in chunk).encode()).hexdigest()[:20]
            shard = folder / f"{digest}.npy"
            if shard.exists():
                try:
                    stored = np.load(shard)
                except (ValueError, OSError, EOFError):
                    warnings.warn(f"feature cache shard {shard} is unreadable; computing it again", stacklevel=2)
                else:
                    if stored.shape == (len(chunk), *shape) and stored.dtype.kind == "f":
                        results[i] = stored.astype(dtype, copy=False)
                        bar.update(len(chunk))
                        continue
                    warnings.warn(
                        f"feature cache shard {shown_path(shard)} holds {stored.shape} {stored.dtype}, not features "
                        f"{(len(chunk), *shape)} of its {len(chunk)} images; computing it again",
                        stacklevel=2,
                    )
        results[i] = _compute(encoder, chunk, batch_size, size, bar).astype(dtype, copy=False)
        if shard is not None:
            write_atomic(shard, lambda f, done=results[i]: np.save(f, done))  # the shard is complete or absent
    bar.close()
    return np.concatenate(results)
