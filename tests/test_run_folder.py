"""helpers.run_folder: one run per folder, nothing finished replaced by accident, resume only the same run."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from helpers import PROJECT_ROOT, write_atomic
from helpers.config import ConfigError, TrainConfig
from helpers.run_folder import LOCK, check_resumable, check_vocabulary, claimed
from helpers.text import Vocabulary

VOCAB = Vocabulary(["a red star", "a red ring", "a blue ring"])  # red is more frequent: a lower id


def config(out, **changes):
    return TrainConfig(**{"model": "show_tell", "epochs": 3, "out": out, **changes})


def finished_run(out, **changes):
    """A run folder as train_captioner leaves it (the files that matter here)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint.npz").write_bytes(b"3 epochs of work")
    (out / "config.json").write_text(json.dumps({"args": config(out, **changes).as_strings()}))
    (out / "vocab.json").write_text(json.dumps({"id_to_token": VOCAB.id_to_token}))
    (out / "metrics.json").write_text("{}")
    return out


def dead_pid():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_out_must_be_a_folder_that_can_be_written(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match=r"`out` .*a_file is a file, not a folder"):
        with claimed(config(tmp_path / "a_file")):
            pass
    with pytest.raises(ConfigError, match=r"`out` .*a_file/run cannot be created \(Not a directory\)"):
        with claimed(config(tmp_path / "a_file" / "run")):
            pass


def test_out_without_write_permission_is_refused(tmp_path, monkeypatch):
    # as root (CI) every folder is writable: what the operating system answers is simulated
    import helpers.run_folder

    monkeypatch.setattr(helpers.run_folder.os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match=r"`out` .*run is not writable"):
        with claimed(config(tmp_path / "run")):
            pass


def test_a_second_run_into_a_folder_in_use_stops_in_one_sentence(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(  # another process owns the folder until told to finish
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys
                from helpers.config import TrainConfig
                from helpers.run_folder import claimed
                with claimed(TrainConfig(model="show_tell", out={str(out)!r})):
                    print("claimed", flush=True)
                    sys.stdin.readline()
            """),
        ],
        cwd=PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "claimed"
        with pytest.raises(ConfigError) as err:
            with claimed(config(out)):
                pytest.fail("two runs own one folder")
        assert f"is in use by another run (process {holder.pid})" in str(err.value)
        assert "run.lock" in str(err.value) and "\n" not in str(err.value)
    finally:
        holder.communicate("done\n", timeout=60)
    assert not (out / LOCK).exists()  # released at the end
    with claimed(config(out)):  # and free again
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()


def test_a_lock_of_a_process_that_has_ended_is_taken_over_saying_so(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    pid = dead_pid()
    (out / LOCK).write_text(json.dumps({"pid": pid, "host": os.uname().nodename}))
    said = []
    with claimed(config(out), log=said.append):
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    assert said == [f"taking over {out / LOCK}: process {pid} that held it is no longer running"]
    assert not (out / LOCK).exists()


def test_a_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with claimed(config(tmp_path / "run")):
            raise RuntimeError("training crashed")
    assert not (tmp_path / "run" / LOCK).exists()


def test_a_finished_run_is_replaced_only_with_overwrite(tmp_path):
    out = finished_run(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ConfigError) as err:
        with claimed(config(out)):
            pytest.fail("an earlier run would be replaced")
    assert "already holds a run (checkpoint.npz, config.json, vocab.json, metrics.json)" in str(err.value)
    assert "`resume`" in str(err.value) and "`overwrite`" in str(err.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    said = []
    with claimed(config(out, overwrite=True), log=said.append):
        assert sorted(p.name for p in out.iterdir()) == [LOCK]
    assert said == [f"replacing the run in {out} (`overwrite`)"]
    with pytest.raises(ConfigError, match="choose one"):
        config(out, overwrite=True, resume=True)


@pytest.mark.parametrize(
    "changed,message",
    [
        ({"seed": 1}, "was trained with `seed` 0, not 1"),
        ({"learning_rate": 0.01}, "was trained with `learning_rate` 0.001, not 0.01"),
        ({"batch_size": 8}, "was trained with `batch_size` 16, not 8"),
        ({"model": "attention"}, "was trained with `model` show_tell, not attention"),
    ],
)
def test_resume_stops_at_the_first_setting_that_differs(tmp_path, changed, message):
    out = finished_run(tmp_path / "run")
    before = (out / "config.json").read_bytes()
    with pytest.raises(ConfigError) as err:
        with claimed(config(out, resume=True, **changed)):
            pytest.fail("resumed another run's settings")
    assert message in str(err.value) and "only `epochs` may change" in str(err.value)
    assert (out / "config.json").read_bytes() == before
    assert ConfigError(str(err.value)).for_command_line().count("--") >= 2  # flags as the command line spells them


def test_resume_accepts_other_epochs_and_the_same_data_however_written(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    out = finished_run(tmp_path / "run", data=data)
    check_resumable(config(out, resume=True, epochs=10, data=data))
    monkeypatch.chdir(tmp_path)
    check_resumable(config(out, resume=True, data="data"))  # relative, the same folder
    with pytest.raises(ConfigError, match="`data`"):
        check_resumable(config(out, resume=True))  # find_dataset's, not this one


def test_a_setting_added_after_the_run_was_saved_counts_as_its_default(tmp_path):
    out = finished_run(tmp_path / "run")
    saved = json.loads((out / "config.json").read_text())
    del saved["args"]["patience"]  # a run of a course version without --patience
    (out / "config.json").write_text(json.dumps(saved))
    check_resumable(config(out, resume=True))
    with pytest.raises(ConfigError, match="`patience` None, not 2"):
        check_resumable(config(out, resume=True, patience=2))


def test_a_run_saved_before_the_small_cnn_settings_counts_as_trained_the_way_the_course_did_then(tmp_path):
    added = ("cnn_blocks", "cnn_top_convs", "image_at_output")
    before = {"show_tell": {"cnn_blocks": 4, "cnn_top_convs": 0, "image_at_output": False},
              "attention": {"cnn_blocks": 3, "cnn_top_convs": 0, "image_at_output": False}}  # fmt: skip
    for model, then in before.items():
        out = finished_run(tmp_path / model, model=model, **then)
        saved = json.loads((out / "config.json").read_text())
        for name in added:  # a run of a course version without these flags
            del saved["args"][name]
        (out / "config.json").write_text(json.dumps(saved))
        check_resumable(config(out, resume=True, model=model, **then))
        now = config(out, resume=True, model=model)  # today's defaults
        if model == "show_tell":  # they changed: resuming with them would not load the checkpoint
            with pytest.raises(ConfigError, match="`cnn_blocks` 4, not 3"):
                check_resumable(now)
        else:
            check_resumable(now)
            with pytest.raises(ConfigError, match="`cnn_blocks` 3, not 4"):
                check_resumable(config(out, resume=True, model=model, cnn_blocks=4))


def test_an_attention_run_saved_before_captions_per_image_existed_counts_as_trained_on_every_caption(tmp_path):
    out = finished_run(tmp_path / "attention", model="attention", captions_per_image=0)
    saved = json.loads((out / "config.json").read_text())
    del saved["args"]["captions_per_image"]  # a run of a course version without the setting
    (out / "config.json").write_text(json.dumps(saved))
    check_resumable(config(out, resume=True, model="attention", captions_per_image=0))
    with pytest.raises(ConfigError, match="`captions_per_image` 0, not 2"):  # today's default draws 2
        check_resumable(config(out, resume=True, model="attention"))


def test_resume_refuses_another_vocabulary_of_the_same_size(tmp_path):
    out = finished_run(tmp_path / "run")
    check_vocabulary(config(out, resume=True), Vocabulary(["a red star", "a red ring", "a blue ring"]))
    swapped = Vocabulary(["a blue star", "a blue ring", "a red ring"])  # same words and size: red and blue swap ids
    assert len(swapped) == len(VOCAB) and set(swapped.id_to_token) == set(VOCAB.id_to_token)
    with pytest.raises(ConfigError) as err:
        check_vocabulary(config(out, resume=True), swapped)
    red, blue = VOCAB.id_to_token.index("red"), VOCAB.id_to_token.index("blue")
    assert f"token {min(red, blue)} is {VOCAB.id_to_token[min(red, blue)]!r} there" in str(err.value)
    check_vocabulary(config(out, overwrite=True), swapped)  # not resuming: nothing to compare


def test_partial_writes_of_a_killed_run_are_removed_at_the_next_start(tmp_path):
    out = finished_run(tmp_path / "run")
    torn = out / f".checkpoint.npz.tmp-{dead_pid()}"
    torn.write_bytes(b"half a checkpoint")
    live = out / f".metrics.json.tmp-{os.getpid()}"  # a writer still running is left alone
    live.write_bytes(b"{")
    said = []
    with claimed(config(out, resume=True), log=said.append):
        pass
    assert not torn.exists() and live.exists()
    assert said == [f"removed {torn}, a partial write of a run that was killed"]


def test_write_atomic_leaves_no_temporary_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"the previous epoch")

    def fails(f):
        f.write(b"half")
        raise KeyboardInterrupt  # a notebook's interrupt mid-write

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, fails)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]
    assert path.read_bytes() == b"the previous epoch"


def test_a_torn_config_or_vocabulary_of_a_run_is_one_sentence_naming_it(tmp_path):
    from helpers.checkpoints import CheckpointError
    from helpers.training import load_trained

    out = finished_run(tmp_path / "run")
    (out / "config.json").write_text('{"model": {"vocab_si')  # killed mid-write by a tool that writes in place
    with pytest.raises(CheckpointError, match=r"config.json is unreadable \(JSONDecodeError"):
        load_trained(out)
    with pytest.raises(ConfigError, match=r"`resume`: .*config.json is unreadable; start afresh with `overwrite`"):
        check_resumable(config(out, resume=True))
