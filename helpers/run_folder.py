"""A run folder (``--out``) belongs to one training run at a time, and what a run left in it
is never replaced by accident.

    with claimed(config, log):      # before any data is read
        ...                         # train; check_vocabulary(config, vocab) once it is known

- ``--out`` must be a folder this process can write, checked first.
- ``run.lock`` holds the owner's process id and host. A second run into the folder stops
  with one sentence; a lock left by a process that has ended is taken over, saying so.
- A folder that holds a run (a checkpoint, its settings or its metrics) is continued with
  ``resume`` or replaced with ``overwrite``, never silently.
- ``resume`` continues only the same run: the saved settings (``config.json``) and
  vocabulary (``vocab.json``) must equal the ones asked for, except ``epochs``, which may
  extend the run or shorten one that has not got that far.
- Partial writes of a killed run (``write_atomic``'s ``.NAME.tmp-PID``) are removed.

No TensorFlow here.
"""

import contextlib
import dataclasses
import json
import os
import socket
from pathlib import Path

from . import process_alive, shown_path, stale_temporaries
from .checkpoints import BEST_CHECKPOINT, CHECKPOINT, CheckpointError
from .config import BEFORE_SETTINGS, ConfigError

LOCK = "run.lock"
RUN_FILES = (CHECKPOINT, BEST_CHECKPOINT, "config.json", "vocab.json", "metrics.json", "captions.json", "readings.json")
RESUMABLE_CHANGES = ("epochs", "resume", "overwrite", "out")  # settings that may differ on resume


def check_writable(out):
    """Raise ``ConfigError`` unless ``out`` is (or can be made) a folder this process writes to."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"`out` {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"`out` {out} cannot be created ({err.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"`out` {out} is not writable")


def _read_lock(lock):
    try:
        owner = json.loads(lock.read_text())
        return int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None  # torn or foreign: its writer died between open and write


def _take_lock(out, log):
    lock = out / LOCK
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(2):  # a stale lock is removed once, then taken like a free one
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid, host = _read_lock(lock)
            if pid == os.getpid() and host == socket.gethostname():
                return lock  # this process's own (a notebook cell interrupted mid-run)
            if pid is not None and (host != socket.gethostname() or process_alive(pid)):
                where = "" if host == socket.gethostname() else f" on {host}"
                raise ConfigError(
                    f"`out` {shown_path(out)} is in use by another run (process {pid}{where}); wait for it "
                    f"or choose another `out` (if no run is using it, delete {shown_path(lock)})"
                ) from None
            log(f"taking over {shown_path(lock)}: process {pid} that held it is no longer running")
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return lock
    raise ConfigError(f"`out` {shown_path(out)}: another run took {shown_path(lock)} at the same moment")


def _held_run(out):
    """The run files in ``out``, or [] for a folder that holds no run."""
    return [name for name in RUN_FILES if (out / name).exists()]


@contextlib.contextmanager
def claimed(config, log=print):
    """Own ``config.out`` for the block: checked writable, locked, cleaned of partial writes,
    and (without ``resume``) free of an earlier run, or emptied of it with ``overwrite``."""
    out = config.out
    check_writable(out)
    lock = _take_lock(out, log)
    try:
        for tmp in stale_temporaries(out):
            tmp.unlink(missing_ok=True)
            log(f"removed {shown_path(tmp)}, a partial write of a run that was killed")
        held = _held_run(out)
        if config.resume:
            check_resumable(config)
        elif held and not config.overwrite:
            raise ConfigError(
                f"`out` {shown_path(out)} already holds a run ({', '.join(held)}); continue it with `resume` "
                "or replace it with `overwrite`"
            )
        elif held:
            for name in held:
                (out / name).unlink()
            log(f"replacing the run in {shown_path(out)} (`overwrite`)")
        yield out
    finally:
        if _read_lock(lock) == (os.getpid(), socket.gethostname()):
            lock.unlink(missing_ok=True)


def _same(name, saved, asked):
    if name == "data" and "None" not in (saved, asked):  # one folder, however it was written
        return Path(saved).expanduser().resolve() == Path(asked).expanduser().resolve()
    return saved == asked


def saved_json(path, key):
    """The JSON object a run saved at ``path`` (config.json, vocab.json), which must hold
    ``key``; a torn or foreign one is a ``CheckpointError`` naming it."""
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        if key not in saved:
            raise KeyError(key)
        return saved
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} is unreadable ({type(err).__name__}: {err}); train the run again") from None


def _saved_for_resume(path, key):
    """``saved_json(path, key)[key]``, its failure worded for ``resume``."""
    try:
        return saved_json(path, key)[key]
    except CheckpointError:
        raise ConfigError(f"`resume`: {shown_path(path)} is unreadable; start afresh with `overwrite`") from None


def check_resumable(config):
    """Raise ``ConfigError`` naming the first setting in which the run saved in ``config.out``
    differs from ``config``; ``epochs`` may differ. A run without a ``config.json`` yet (killed
    before its first write) has nothing to compare."""
    path = config.out / "config.json"
    if not path.is_file():
        return
    saved = _saved_for_resume(path, "args")
    asked = config.as_strings()
    # a setting added to the course after the run was saved: what the course did before it existed
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.name not in ("model", "out")}
    defaults = config.replace(**{**defaults, **BEFORE_SETTINGS.get(config.model, {})})
    defaults = defaults.as_strings()
    for name, value in asked.items():
        if name in RESUMABLE_CHANGES:
            continue
        before = saved.get(name, defaults[name])
        if not _same(name, before, value):
            raise ConfigError(
                f"`resume`: the run in {shown_path(config.out)} was trained with `{name}` {before}, not {value}; "
                "resume with its settings (only `epochs` may change) or start afresh with `overwrite`"
            )


def check_vocabulary(config, vocab):
    """With ``config.resume``: raise ``ConfigError`` naming the first token in which ``vocab``
    (a ``helpers.text.Vocabulary``, built on the captions at hand) differs from the run's."""
    if not config.resume or not (config.out / "vocab.json").is_file():
        return
    tokens = _saved_for_resume(config.out / "vocab.json", "id_to_token")
    if tokens != list(vocab.id_to_token):
        i = next((i for i, (a, b) in enumerate(zip(tokens, vocab.id_to_token)) if a != b), None)
        what = (
            f"{len(tokens):,} tokens there, {len(vocab.id_to_token):,} here"
            if i is None
            else f"token {i} is {tokens[i]!r} there, {vocab.id_to_token[i]!r} here"
        )
        raise ConfigError(
            f"`resume`: the captions give another vocabulary than the run in {shown_path(config.out)} was "
            f"trained on ({what}); resume on its data or start afresh with `overwrite`"
        )
