"""helpers.checkpoints: weights stored and loaded by path, never by position."""

import json

import keras
import numpy as np
import pytest

from helpers.attention import ShowAttendTell
from helpers.captioner import ShowAndTell
from helpers.checkpoints import CheckpointError, load_checkpoint, save_checkpoint, weight_paths
from helpers.crnn import build_crnn

IMAGES = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
TOKENS = np.array([[1, 5, 6, 2], [1, 7, 2, 0]])


def built(model):
    model(IMAGES, np.array([0, 1]), TOKENS)
    return model


class InitCBeforeInitH(ShowAttendTell):
    """The paper decoder with its two same-shaped start layers the other way round: the layer
    created first (first in ``get_weights()``) serves as init_c, the second as init_h."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, init_from_mean=True, **kwargs)
        self.init_h, self.init_c = self.init_c, self.init_h


@pytest.fixture
def small_attention(tiny_attention):
    """Built models from ``tiny_attention``, their weights seeded by how many options they get."""

    def make(cls=ShowAttendTell, **options):
        keras.utils.set_random_seed(len(options))
        return built(tiny_attention(cls=cls, **options))

    return make


def test_every_weight_has_one_path_named_after_its_layer(small_attention):
    model = built(ShowAndTell(12, encoder="resnet50", encoder_weights=None, image_size=32, fine_tune=2))
    paths = weight_paths(model)
    assert len(paths) == len(model.weights) and {id(v) for v in paths.values()} == {id(v) for v in model.weights}
    assert {"logits/kernel", "lstm/cell/kernel", "embed/embeddings", "cnn/resnet50/conv1_conv/kernel"} <= set(paths)
    attention = small_attention(init_from_mean=True)
    assert {"attention/W_a/kernel", "init_h/kernel", "init_c/kernel", "cnn/conv1/kernel"} <= set(
        weight_paths(attention)
    )
    crnn = build_crnn()
    assert {"bilstm/forward_layer/cell/kernel", "bilstm/backward_layer/cell/kernel"} <= set(weight_paths(crnn))


def test_a_swapped_pair_of_same_shaped_layers_loads_into_the_right_layers(tmp_path, small_attention):
    saved = small_attention(init_from_mean=True)
    save_checkpoint(tmp_path / "checkpoint.npz", saved)
    swapped = small_attention(InitCBeforeInitH)
    # by position, init_h's weights would land in init_c: the layers really are in the other order
    kernels = [w.shape for w in swapped.get_weights()]
    assert kernels == [w.shape for w in saved.get_weights()]
    position = [i for i, w in enumerate(swapped.weights) if w is swapped.init_h.kernel][0]
    assert not np.array_equal(saved.get_weights()[position], saved.init_h.kernel.numpy())

    load_checkpoint(tmp_path / "checkpoint.npz", swapped)
    for name in ("init_h", "init_c", "logits", "gate"):
        for a, b in zip(getattr(saved, name).weights, getattr(swapped, name).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    x = (IMAGES, np.array([0, 1]), TOKENS)
    np.testing.assert_allclose(swapped(*x), saved(*x), rtol=1e-6, atol=1e-6)


def test_optimizer_state_comes_back_by_name(tmp_path, small_attention):
    model = small_attention()
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(model.trainable_variables)
    optimizer.apply([keras.ops.ones_like(v) for v in model.trainable_variables], model.trainable_variables)
    save_checkpoint(tmp_path / "c.npz", model, [optimizer], {"epoch": 3, "history": [{"loss": 1.5}]})
    again = small_attention()
    fresh = keras.optimizers.Adam(0.01)
    fresh.build(again.trainable_variables)
    assert load_checkpoint(tmp_path / "c.npz", again, [fresh]) == {"epoch": 3, "history": [{"loss": 1.5}]}
    for a, b in zip(optimizer.variables, fresh.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.name)
    assert int(fresh.iterations.numpy()) == 1


def test_another_models_checkpoint_is_refused_naming_a_path(tmp_path, small_attention, tiny_attention):
    save_checkpoint(tmp_path / "c.npz", small_attention())
    with pytest.raises(CheckpointError, match=r"c.npz holds the weights of another model: it lacks init_c/bias"):
        load_checkpoint(tmp_path / "c.npz", small_attention(init_from_mean=True))
    bigger = built(tiny_attention(13))
    before = [w.copy() for w in bigger.get_weights()]
    with pytest.raises(CheckpointError, match=r"embed/embeddings is \(12, 8\) there, \(13, 8\) here"):
        load_checkpoint(tmp_path / "c.npz", bigger)
    assert all(np.array_equal(a, b) for a, b in zip(before, bigger.get_weights()))  # nothing half-loaded


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", None], ids=["empty", "garbage", "truncated"])
def test_an_unreadable_checkpoint_is_one_sentence_naming_it(tmp_path, content, small_attention):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, small_attention())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content is None else content)
    with pytest.raises(CheckpointError, match=r"checkpoint.npz is unreadable"):
        load_checkpoint(path, small_attention())


def test_a_checkpoint_by_position_is_recognised(tmp_path, small_attention):
    model = small_attention()
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(tmp_path / "old.npz", meta=np.array(json.dumps({"epoch": 1})), **arrays)
    with pytest.raises(CheckpointError, match="stores weights by position"):
        load_checkpoint(tmp_path / "old.npz", model)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.npz", model)


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (ShowAndTell, {"embed_dim": 8, "hidden": 8, "image_size": 32, "cnn_width": 4, "image_as": "state"}),
        (
            ShowAndTell,
            {
                "embed_dim": 8,
                "hidden": 8,
                "image_size": 32,
                "cnn_width": 4,
                "cnn_blocks": 4,
                "cnn_top_convs": 0,
                "image_at_output": False,
            },
        ),
        (
            ShowAttendTell,
            {
                "embed_dim": 8,
                "hidden": 16,
                "attention_dim": 8,
                "feature_dim": 8,
                "image_size": 32,
                "cnn_width": 4,
                "penalty": 0.5,
                "init_from_mean": True,
                "context_into_lstm": True,
            },
        ),
    ],
)
def test_get_config_and_a_checkpoint_rebuild_the_same_model(tmp_path, cls, kwargs):
    model = built(cls(12, **kwargs))
    config = model.get_config()
    assert {k: config[k] for k in kwargs} == kwargs and config["vocab_size"] == 12  # every constructor argument
    assert all(getattr(model, k) == v for k, v in kwargs.items())  # ... kept as an attribute
    again = cls.from_config(config)
    assert again.get_config() == config
    built(again)
    save_checkpoint(tmp_path / "c.npz", model)
    load_checkpoint(tmp_path / "c.npz", again)
    x = (IMAGES, np.array([0, 1]), TOKENS)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(*x)), keras.ops.convert_to_numpy(model(*x)))


OPTIONS_ADDED_LATER = {  # each model's options as they were before they existed (config.BEFORE_SETTINGS)
    "ShowAndTell": {"cnn_blocks": 4, "cnn_top_convs": 0, "image_at_output": False},
    "ShowAttendTell": {"where_into_lstm": False},
}


@pytest.mark.parametrize("cls", [ShowAndTell, ShowAttendTell], ids=lambda c: c.__name__)
def test_a_run_saved_before_an_option_existed_loads_as_the_model_it_was(tmp_path, cls):
    from helpers.text import SPECIALS
    from helpers.training import load_trained

    then = OPTIONS_ADDED_LATER[cls.__name__]
    sizes = {"image_as": "state"} if cls is ShowAndTell else {"attention_dim": 8, "feature_dim": 8}
    model = built(cls(12, embed_dim=8, hidden=8, image_size=32, cnn_width=4, **sizes, **then))
    saved = {k: v for k, v in model.get_config().items() if k not in then}  # a config.json of that course version
    (tmp_path / "config.json").write_text(json.dumps({"model": saved, "class": cls.__name__, "args": {}}))
    (tmp_path / "vocab.json").write_text(json.dumps({"id_to_token": [*SPECIALS, *"abcdefgh"]}))
    save_checkpoint(tmp_path / "checkpoint.npz", model)
    again, _ = load_trained(tmp_path)  # today's defaults differ: it must not build those
    assert [getattr(again, k) for k in then] == list(then.values())
    x = (IMAGES, np.array([0, 1]), TOKENS)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(*x)), keras.ops.convert_to_numpy(model(*x)))
