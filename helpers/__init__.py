"""Helpers for the RNN-to-captioning course.

Importing this package is cheap: it imports no TensorFlow. It quiets TensorFlow's C++
logging and points Keras's cache (``KERAS_HOME``) into the project *before* any notebook
imports TensorFlow, so those two lines must run first: ``import helpers`` at the top.
"""

import os
import random
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# 3, not 2: under op determinism TF 2.21's tf.data logs a spurious C++ "error" at level 2
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if (PROJECT_ROOT / "pyproject.toml").exists():  # a checkout, not a site-packages install
    os.environ.setdefault("KERAS_HOME", str(PROJECT_ROOT / ".keras"))

__all__ = ["seed_everything", "shown_path", "write_atomic", "PROJECT_ROOT"]


def shown_path(path):
    """``path`` relative to the project when inside it (printed output then holds no
    machine-specific paths), else as given."""
    path = Path(path)
    absolute = path.absolute()
    return absolute.relative_to(PROJECT_ROOT) if absolute.is_relative_to(PROJECT_ROOT) else path


def write_atomic(path, write):
    """Write a file so that a crash never leaves it torn: ``write(f)`` fills a temporary file
    beside it, which then replaces ``path`` in one step (the old file stays whole until then)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def seed_everything(seed):
    """Seed Python, NumPy and TensorFlow, and make TF ops deterministic.

    After this, rerunning the same cells gives the same numbers (on the same machine).
    TensorFlow is imported here, not at package import.
    """
    import numpy as np

    seed = int(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    try:
        import tensorflow as tf
    except ImportError:  # NumPy-only use of the helpers
        return
    tf.keras.utils.set_random_seed(seed)  # Python, NumPy, TF and Keras at once
    tf.config.experimental.enable_op_determinism()
