import re
import tomllib

import numpy as np
import yaml

from helpers import PROJECT_ROOT, seed_everything


def test_seed_everything_repeats_numpy_python_and_tensorflow():
    import random

    import keras
    import tensorflow as tf

    def draw():
        layer = keras.layers.Dense(3)
        layer.build((None, 2))
        return random.random(), np.random.rand(), float(tf.random.uniform(())), layer.get_weights()[0]

    seed_everything(5)
    first = draw()
    seed_everything(5)
    second = draw()
    assert first[:3] == second[:3] and np.array_equal(first[3], second[3])
    seed_everything(6)
    assert draw()[1] != first[1]


def _name(requirement):
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(requirement):
    return requirement.strip().lower().replace(" ", "").split(";")[0].split("]")[-1].removeprefix(_name(requirement))


def test_environment_yml_installs_what_pyproject_declares():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    declared = (
        project["dependencies"]
        + project["optional-dependencies"]["tensorflow"]
        + project["optional-dependencies"]["test"]
    )
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in conda and "-e ." in pip
    listed = [d for d in conda if _name(d) not in ("python", "pip")] + [p for p in pip if not p.startswith("-e")]
    assert {_name(r): _spec(r) for r in listed} == {_name(r): _spec(r) for r in declared}


def test_tensorflow_extras_agree():
    extras = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert _spec(extras["tensorflow"][0]) == _spec(extras["tensorflow-cpu"][0])
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "tensorflow-cpu" in makefile and '".[$(TF),test]"' in makefile
