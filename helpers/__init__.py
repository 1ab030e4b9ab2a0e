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

__all__ = [
    "seed_everything",
    "shown_path",
    "write_atomic",
    "one_line",
    "stale_temporaries",
    "process_alive",
    "PROJECT_ROOT",
]


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
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # an error or an interrupt: no half-written file left behind
        tmp.unlink(missing_ok=True)
        raise


def one_line(err):
    """An error as the command lines print it: an ``OSError`` the code did not word itself as
    its path and cause, anything else as its message's first line."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def process_alive(pid):
    """Whether a process with this id runs on this machine (one of another user's counts)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temporaries(folder, pattern=".*.tmp-*"):
    """Temporary files or folders in ``folder`` whose name ends in the id of a process that
    has ended (``write_atomic``'s ``.NAME.tmp-PID`` of a killed run): safe to remove."""
    found = []
    for tmp in sorted(Path(folder).glob(pattern)):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(pid):
            found.append(tmp)
    return found


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
