"""Checkpoints: a model's weights and its optimizers' state, stored by name, in one file that
is replaced atomically.

Every weight is stored under its **path**: the chain of attribute names from the model down
to the layer that owns it (inside a functional model, the layer's name), then the weight's
own name, e.g. ``attention/W_a/kernel`` or ``cnn/conv1/kernel``. Loading matches paths, not
positions, so two layers of one shape can never load into each other, and a checkpoint of
another model is refused naming the first path that differs. Optimizer variables are stored
under ``optimizer{i}/`` and their Keras names (a slot's name includes its weight's). The
file is a NumPy ``.npz`` with a JSON ``meta`` entry (epoch and history), written by
``helpers.write_atomic``: a crash mid-write leaves the previous checkpoint whole.
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from . import write_atomic

CHECKPOINT = "checkpoint.npz"  # the last epoch's: weights, optimizer state, history
BEST_CHECKPOINT = "best_checkpoint.npz"  # a captioner's best epoch by validation CIDEr


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or of another model."""


def _children(layer):
    """(name, sublayer) pairs of a layer: its attributes that hold layers (or lists of them),
    then, for a functional model, its layers by their names."""
    import keras

    seen = set()
    for attr, value in vars(layer).items():
        if attr.startswith("_"):
            continue
        items = [(attr, value)] if isinstance(value, keras.layers.Layer) else []
        if isinstance(value, (list, tuple)):
            items = [(f"{attr}/{i}", v) for i, v in enumerate(value) if isinstance(v, keras.layers.Layer)]
        for name, child in items:
            if id(child) not in seen:
                seen.add(id(child))
                yield name, child
    if isinstance(layer, keras.Model):
        for child in layer.layers:  # a functional model holds its layers in no attribute
            if id(child) not in seen:
                seen.add(id(child))
                yield child.name, child


def weight_paths(model):
    """``{path: variable}`` for every weight of ``model`` (see the module docstring)."""
    paths, placed = {}, set()  # placed: ids of the weights already given a path

    def walk(layer, prefix):
        children = list(_children(layer))
        nested = {id(w) for _, child in children for w in child.weights}
        for w in layer.weights:
            if id(w) in nested or id(w) in placed:
                continue
            path = prefix + w.name
            if path in paths:
                raise ValueError(f"two weights of {model.name} share the path {path}")
            paths[path] = w
            placed.add(id(w))
        for name, child in children:
            walk(child, f"{prefix}{name}/")

    walk(model, "")
    return paths


def _optimizer_paths(optimizers):
    paths = {}
    for i, optimizer in enumerate(optimizers):
        for v in optimizer.variables:
            path, k = f"optimizer{i}/{v.name}", 1
            while path in paths:  # Keras names slots after their weights; should two collide, count them
                path, k = f"optimizer{i}/{v.name}#{k}", k + 1
            paths[path] = v
    return paths


def save_checkpoint(path, model, optimizers=(), meta=None):
    """Write ``model``'s weights, the state of ``optimizers`` (a list: a fine-tuned encoder has
    an optimizer of its own) and ``meta`` (a JSON-able dict) to ``path``, atomically."""
    arrays = {f"weights/{p}": np.asarray(v) for p, v in weight_paths(model).items()}
    arrays.update({p: np.asarray(v) for p, v in _optimizer_paths(optimizers).items()})
    arrays["meta"] = np.array(json.dumps(meta or {}))
    write_atomic(path, lambda f: np.savez(f, **arrays))


def _check(targets, arrays, path, what):
    missing = sorted(set(targets) - set(arrays))
    extra = sorted(set(arrays) - set(targets))
    if missing or extra:
        first = f"it lacks {missing[0]}" if missing else f"it holds {extra[0]}, which this model has not"
        raise CheckpointError(
            f"{path} holds the {what} of another model: {first} ({len(missing)} missing, {len(extra)} unexpected)"
        )
    for name, variable in targets.items():
        if tuple(variable.shape) != arrays[name].shape:
            raise CheckpointError(
                f"{path} holds the {what} of another model: {name} is "
                f"{arrays[name].shape} there, {tuple(variable.shape)} here"
            )


def load_checkpoint(path, model, optimizers=None):
    """Load what ``save_checkpoint`` wrote into ``model`` (built) and ``optimizers`` (built;
    None leaves the optimizer state unread, to use the model alone); returns its ``meta``.
    Raises ``CheckpointError`` in one sentence when the file is missing, unreadable, or of
    another model or optimizer; then nothing has been assigned."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path) as data:
            stored = {name: data[name] for name in data.files}
        meta = json.loads(str(stored.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path} is unreadable ({err})") from None
    weights = {k.removeprefix("weights/"): v for k, v in stored.items() if k.startswith("weights/")}
    if not weights:
        raise CheckpointError(f"{path} stores weights by position (an older version of the course); train again")
    pairs = [(weight_paths(model), weights, "weights")]
    if optimizers is not None:
        state = {k: v for k, v in stored.items() if k.startswith("optimizer")}
        pairs.append((_optimizer_paths(optimizers), state, "optimizer state"))
    for targets, arrays, what in pairs:  # all checked before anything changes
        _check(targets, arrays, path, what)
    for targets, arrays, _ in pairs:
        for name, variable in targets.items():
            variable.assign(arrays[name])
    return meta
