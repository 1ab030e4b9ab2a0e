"""helpers.features: encoders without downloads, and the atomic, resumable feature cache."""

import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from helpers import PROJECT_ROOT, features


@pytest.fixture(scope="module")
def encoder():
    from helpers import seed_everything

    seed_everything(0)
    return features.build_encoder("small_cnn", weights=None, input_size=32)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(11):
        path = tmp_path / f"img{i:02d}.jpg"
        cv2.imwrite(str(path), rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def expected(encoder, paths):
    import tensorflow as tf

    batch = np.stack([features._decode(str(p), 32).numpy() for p in paths])
    return np.asarray(encoder(tf.constant(batch), training=False))


@pytest.mark.parametrize(
    "name,size,shape",
    [
        ("mobilenet_v3_small", 64, (576,)),
        ("resnet50", 64, (2048,)),
        ("efficientnet_b0", 64, (1280,)),
        ("small_cnn", 96, (128,)),
    ],
)
def test_encoders_build_without_downloading(name, size, shape):
    model = features.build_encoder(name, weights=None, input_size=size)
    out = model(np.zeros((2, size, size, 3), np.float32))
    assert tuple(out.shape) == (2, *shape)
    assert model.course_key.startswith(f"{name}-{size}px-pooled-")
    if name != "small_cnn":
        spatial = features.build_encoder(name, weights=None, input_size=size, spatial=True)
        assert len(spatial.output_shape) == 4 and spatial.output_shape[-1] == shape[0]


def test_offline_download_gets_one_clear_sentence(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid/weights.h5: None -- [Errno -3] name resolution")

    monkeypatch.delenv("COURSE_OFFLINE", raising=False)  # make test sets it; here downloads are "allowed" and fail
    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(features.EncoderUnavailableError) as err:
        features.build_encoder("mobilenet_v3_small", input_size=64)
    message = str(err.value)
    assert "could not get the ImageNet weights of mobilenet_v3_small" in message and "small_cnn" in message
    assert "\n" not in message


def test_bad_names_and_options():
    with pytest.raises(ValueError, match="unknown encoder 'alexnet'; choose one of"):
        features.build_encoder("alexnet")
    with pytest.raises(ValueError, match="vgg16 gives the 4,096-d fc2 vector"):
        features.build_encoder("vgg16", weights=None, spatial=True)
    with pytest.raises(ValueError, match="224"):
        features.build_encoder("vgg16", weights=None, input_size=64)


def test_features_equal_the_encoder_and_come_back_from_the_cache(encoder, images, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = features.extract_features(encoder, images, cache_dir=cache, batch_size=4, shard_size=4, progress=False)
    assert first.shape == (11, 128) and first.dtype == np.float32
    np.testing.assert_allclose(first, expected(encoder, images), rtol=1e-5, atol=1e-6)
    assert len(list((cache / encoder.course_key).glob("*.npy"))) == 3

    monkeypatch.setattr(features, "_compute", lambda *a: pytest.fail("cache miss"))
    again = features.extract_features(encoder, images, cache_dir=cache, shard_size=4, progress=False)
    np.testing.assert_array_equal(again, first)


def test_float16_features_are_half_the_bytes_on_disk_and_the_same_values(encoder, images, tmp_path, monkeypatch):
    spatial = features.build_encoder("small_cnn", weights=None, input_size=32, spatial=True)
    cache = tmp_path / "cache"
    half = features.extract_features(spatial, images, cache_dir=cache, shard_size=4, progress=False, dtype="float16")
    assert half.dtype == np.float16 and half.shape == (11, 2, 2, 128)
    full = features.extract_features(spatial, images, cache_dir=None, progress=False)
    np.testing.assert_allclose(half, full, rtol=1e-3, atol=1e-3)
    shard = sorted((cache / spatial.course_key).glob("*.npy"))[0]
    assert np.load(shard).dtype == np.float16
    monkeypatch.setattr(features, "_compute", lambda *a: pytest.fail("cache miss"))
    np.testing.assert_array_equal(
        features.extract_features(spatial, images, cache_dir=cache, shard_size=4, progress=False, dtype="float16"),
        half,
    )
    monkeypatch.setenv("COURSE_FEATURE_CACHE", str(cache))  # "default": the folder the variable names, read now
    assert features.default_cache_dir() == cache


def test_a_changed_image_is_recomputed(encoder, images, tmp_path):
    cache = tmp_path / "cache"
    features.extract_features(encoder, images, cache_dir=cache, shard_size=4, progress=False)
    cv2.imwrite(str(images[5]), np.full((40, 50, 3), 200, np.uint8))
    fresh = features.extract_features(encoder, images, cache_dir=cache, shard_size=4, progress=False)
    np.testing.assert_allclose(fresh[5], expected(encoder, images[5:6])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # a process that kills itself
def test_kill_9_mid_run_resumes_without_recomputing_finished_shards(tmp_path, images):
    cache = tmp_path / "cache"
    paths = ",".join(repr(str(p)) for p in images)
    script = textwrap.dedent(f"""
        import os, signal
        from helpers import features, seed_everything
        seed_everything(0)
        enc = features.build_encoder("small_cnn", weights=None, input_size=32)
        real, done = features._compute, []
        def compute(*args):
            if len(done) == 2:
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no exception handlers
            done.append(1)
            return real(*args)
        features._compute = compute
        features.extract_features(enc, [{paths}], cache_dir={str(cache)!r}, shard_size=4, progress=False)
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert run.returncode == -9, run.stderr
    folder = next(cache.iterdir())
    assert len(list(folder.glob("*.npy"))) == 2  # the finished shards, nothing torn
    from helpers import seed_everything

    seed_everything(0)
    enc = features.build_encoder("small_cnn", weights=None, input_size=32)
    assert enc.course_key == folder.name  # same seed, same weights, same cache
    computed = []
    real = features._compute
    features._compute = lambda *a: computed.append(len(a[1])) or real(*a)
    try:
        out = features.extract_features(enc, images, cache_dir=cache, shard_size=4, progress=False)
    finally:
        features._compute = real
    assert computed == [3]  # only the missing last shard
    np.testing.assert_allclose(out, expected(enc, images), rtol=1e-5, atol=1e-6)


def test_unreadable_shard_is_recomputed_with_a_warning(encoder, images, tmp_path):
    cache = tmp_path / "cache"
    first = features.extract_features(encoder, images, cache_dir=cache, shard_size=4, progress=False)
    shard = sorted((cache / encoder.course_key).glob("*.npy"))[0]
    shard.write_bytes(shard.read_bytes()[:50])  # damaged behind our back
    with pytest.warns(UserWarning, match="unreadable; computing it again"):
        again = features.extract_features(encoder, images, cache_dir=cache, shard_size=4, progress=False)
    np.testing.assert_array_equal(again, first)


def test_bad_images_are_named(encoder, images, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg could not be decoded"):
        features.extract_features(encoder, images[:3] + [tmp_path / "broken.jpg"], cache_dir=None, progress=False)
    with pytest.raises(ValueError, match=r"missing\.jpg does not exist"):
        features.extract_features(encoder, [tmp_path / "missing.jpg"], cache_dir=None, progress=False)


def test_offline_mode_never_downloads(monkeypatch, tmp_path):
    from keras.src.utils import file_utils

    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(file_utils, "get_file", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(features.EncoderUnavailableError, match="downloads are off"):
        features.build_encoder("resnet50", input_size=64)
    assert file_utils.get_file.__name__ == "<lambda>"  # the real function is restored afterwards


def test_a_shard_of_the_wrong_shape_is_recomputed_with_a_warning(encoder, images, tmp_path):
    cache = tmp_path / "cache"
    first = features.extract_features(encoder, images, cache_dir=cache, shard_size=4, progress=False)
    # 11 images make shards of 4, 4 and 3 rows, named by digest: take a full one, not the first name
    shard = next(s for s in sorted((cache / encoder.course_key).glob("*.npy")) if len(np.load(s)) == 4)
    np.save(shard, np.load(shard)[:3])  # a valid .npy, one row short: it would misalign every later image
    with pytest.warns(UserWarning, match=r"holds \(3, 128\) float32, not features \(4, 128\) of its 4 images"):
        again = features.extract_features(encoder, images, cache_dir=cache, shard_size=4, progress=False)
    np.testing.assert_array_equal(again, first)
    assert np.load(shard).shape == (4, 128)  # mended on disk


def test_encoders_that_differ_only_in_a_weightless_layer_do_not_share_a_cache(images, tmp_path):
    import keras

    def encoder(pool):
        keras.utils.set_random_seed(0)  # the same weights for both
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
        return keras.Model(inputs, pool()(x), name="custom")

    cache = tmp_path / "cache"
    average = encoder(keras.layers.GlobalAveragePooling2D)
    maximum = encoder(keras.layers.GlobalMaxPooling2D)
    assert all(np.array_equal(a, m) for a, m in zip(average.get_weights(), maximum.get_weights()))
    by_average = features.extract_features(average, images, cache_dir=cache, progress=False)
    by_max = features.extract_features(maximum, images, cache_dir=cache, progress=False)
    np.testing.assert_allclose(by_max, expected(maximum, images), rtol=1e-5, atol=1e-5)
    assert not np.allclose(by_average, by_max)
    assert len(list(cache.iterdir())) == 2


def test_a_killed_writers_partial_shard_is_removed_and_a_live_ones_kept(encoder, images, tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)  # a process that has ended
    folder = tmp_path / "cache" / encoder.course_key
    folder.mkdir(parents=True)
    (folder / f".abc.npy.tmp-{dead}").write_bytes(b"half a shard")
    (folder / f".def.npy.tmp-{os.getpid()}").write_bytes(b"being written")
    features.extract_features(encoder, images[:2], cache_dir=tmp_path / "cache", progress=False)
    assert sorted(p.name for p in folder.glob(".*")) == [f".def.npy.tmp-{os.getpid()}"]


def test_an_image_tensorflow_cannot_decode_is_named(encoder, images, tmp_path):
    tiff = tmp_path / "scan.jpg"  # a TIFF under a .jpg name: OpenCV reads it, TensorFlow does not
    cv2.imwrite(str(tmp_path / "scan.tif"), np.zeros((40, 50, 3), np.uint8))
    (tmp_path / "scan.tif").rename(tiff)
    with pytest.raises(ValueError, match=r"image file .*scan\.jpg is not a JPEG, PNG, GIF or BMP file"):
        features.extract_features(encoder, [*images[:3], tiff], cache_dir=None, progress=False)


@pytest.mark.parametrize("blocks,top_convs,view", [(3, 0, 17), (3, 1, 33), (4, 0, 33), (2, 1, 17)])
def test_a_cell_of_small_cnn_sees_the_pixels_its_docstring_says(blocks, top_convs, view):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = features.small_cnn(64, 8, blocks=blocks, top_convs=top_convs)
    images = tf.Variable(np.random.default_rng(0).uniform(0, 255, (8, 64, 64, 3)).astype("float32"))
    centre = 64 // 2**blocks // 2
    with tf.GradientTape() as tape:
        cell = tf.reduce_sum(model(images, training=False)[:, centre, centre])
    # the union over 8 images: where one image's ReLU is off, another's is on
    touched = np.abs(tape.gradient(cell, images).numpy()).sum(axis=(0, 3)) > 0
    rows, cols = np.flatnonzero(touched.any(1)), np.flatnonzero(touched.any(0))
    assert (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == (view, view)
