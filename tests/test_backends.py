"""The models are Keras 3 code (``keras.ops``, no TensorFlow inside them): rebuilt from their
``get_config`` under Keras's JAX and NumPy backends, in a process that cannot import
TensorFlow, and given the weights of a checkpoint written under TensorFlow, they compute the
same logits, attention maps and captions. ``bench/full_scale.py`` relies on this to run the
course's own classes under JAX."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from helpers import PROJECT_ROOT
from helpers.captioner import ShowAndTell
from helpers.checkpoints import save_checkpoint
from helpers.crnn import build_crnn
from helpers.decoding import greedy_decode

pytestmark = pytest.mark.slow  # a process per backend
pytest.importorskip("jax")  # `make test` installs it (the backends extra); Keras's NumPy backend needs it too

CHILD = textwrap.dedent("""
    import json, sys

    class NoTensorFlow:  # as on a machine without it (bench/full_scale.py's GPU machine): importing it fails
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "tensorflow":
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, NoTensorFlow())
    import numpy as np
    import keras
    from helpers.attention import ShowAttendTell
    from helpers.captioner import ShowAndTell
    from helpers.checkpoints import load_checkpoint
    from helpers.crnn import build_crnn
    from helpers.decoding import greedy_decode

    folder = sys.argv[1]
    data = dict(np.load(folder + "/inputs.npz"))
    out = {}
    for name, cls in (("show_tell", ShowAndTell), ("attention", ShowAttendTell)):
        model = cls.from_config(json.load(open(f"{folder}/{name}.json")))
        model(data["images"], data["image_index"], data["tokens"])  # builds the weights
        load_checkpoint(f"{folder}/{name}.npz", model)
        out[name + "_logits"] = keras.ops.convert_to_numpy(model(data["images"], data["image_index"], data["tokens"]))
        decoded = greedy_decode(model.step, model.initial_state(data["images"]), 1, 2, 8)
        out[name + "_captions"] = np.array([h[0][0] + [0] * (8 - len(h[0][0])) for h in decoded])
    _, alphas = model.teacher_forced(data["images"], data["image_index"], data["tokens"])
    out["attention_alphas"] = keras.ops.convert_to_numpy(alphas)
    crnn = build_crnn()
    load_checkpoint(folder + "/crnn.npz", crnn)
    out["crnn_logits"] = keras.ops.convert_to_numpy(crnn(data["lines"]))
    np.savez(folder + "/outputs.npz", **out)
    print(keras.backend.backend(), "tensorflow" in sys.modules)
""")


@pytest.mark.parametrize("backend", ["jax", "numpy"])
def test_the_models_give_the_same_numbers_without_tensorflow(tmp_path, backend, tiny_attention):
    rng = np.random.default_rng(0)
    inputs = {
        "images": rng.uniform(0, 255, (3, 32, 32, 3)).astype("float32"),
        "image_index": np.array([0, 1, 2, 2]),
        "tokens": np.array([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0], [1, 4, 4, 9, 2], [1, 3, 2, 0, 0]]),
        "lines": rng.uniform(0, 1, (2, 32, 128, 1)).astype("float32"),
    }
    np.savez(tmp_path / "inputs.npz", **inputs)
    keras.utils.set_random_seed(0)
    models = {
        "show_tell": ShowAndTell(12, embed_dim=8, hidden=8, image_size=32, cnn_width=4, image_as="state"),
        "attention": tiny_attention(init_from_mean=True, context_into_lstm=True),
    }
    expected = {}
    x = (inputs["images"], inputs["image_index"], inputs["tokens"])
    for name, model in models.items():
        expected[name + "_logits"] = keras.ops.convert_to_numpy(model(*x))
        decoded = greedy_decode(model.step, model.initial_state(inputs["images"]), 1, 2, 8)
        expected[name + "_captions"] = np.array([h[0][0] + [0] * (8 - len(h[0][0])) for h in decoded])
        (tmp_path / f"{name}.json").write_text(json.dumps(model.get_config()))
        save_checkpoint(tmp_path / f"{name}.npz", model)
    expected["attention_alphas"] = keras.ops.convert_to_numpy(models["attention"].teacher_forced(*x)[1])
    crnn = build_crnn()
    expected["crnn_logits"] = keras.ops.convert_to_numpy(crnn(inputs["lines"]))
    save_checkpoint(tmp_path / "crnn.npz", crnn)

    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(PROJECT_ROOT), JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [backend, "False"]  # that backend, and TensorFlow never imported
    with np.load(tmp_path / "outputs.npz") as got:
        assert set(got.files) == set(expected)
        for name, value in expected.items():
            if name.endswith("captions"):
                np.testing.assert_array_equal(got[name], value, err_msg=name)
            else:
                np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
