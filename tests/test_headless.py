"""python -m helpers.headless (make run): waits for kernel messages in slices, executes
notebooks into another folder, and names a failing notebook and its error in one line."""

import asyncio
import os
import subprocess
import sys
import time
from queue import Empty

import pytest

from helpers import PROJECT_ROOT


class Channel:
    """A stand-in for a kernel channel: empty for ``empty_for`` calls, then a message."""

    def __init__(self, empty_for):
        self.empty_for, self.waits = empty_for, []

    async def get_msg(self, timeout=None):
        self.waits.append(timeout)
        if len(self.waits) <= self.empty_for:
            await asyncio.sleep(timeout or 0)
            raise Empty
        return {"msg": len(self.waits)}


def test_a_wait_is_cut_into_slices_and_still_returns_the_message():
    from helpers.headless import sliced

    channel = Channel(empty_for=3)
    get_msg = sliced(Channel.get_msg, poll_s=0.01)
    assert asyncio.run(get_msg(channel, timeout=None)) == {"msg": 4}  # no timeout: slices until it comes
    assert channel.waits == [0.01] * 4
    channel = Channel(empty_for=2)
    assert asyncio.run(get_msg(channel, timeout=5)) == {"msg": 3}
    assert all(w <= 0.01 for w in channel.waits)


def test_a_wait_still_ends_at_its_timeout():
    from helpers.headless import sliced

    channel = Channel(empty_for=10**6)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(sliced(Channel.get_msg, poll_s=0.02)(channel, timeout=0.1))
    assert 0.1 <= time.monotonic() - start < 1.0
    assert 4 <= len(channel.waits) and max(channel.waits) <= 0.02


def write_notebook(path, cells):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def run(*args):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "helpers.headless", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow  # real kernels
def test_notebooks_run_in_their_folder_and_land_in_the_output_folder(tmp_path):
    import nbformat

    (tmp_path / "here.txt").write_text("found")
    write_notebook(
        tmp_path / "a.ipynb",
        [
            "import ipywidgets as w\nw.interact(lambda x: print('x =', x), x=(0, 4))",
            "print(open('here.txt').read())",  # the notebook's folder is the working directory
        ],
    )
    done = run("--out-dir", tmp_path / "out", tmp_path / "a.ipynb")
    assert done.returncode == 0, done.stderr
    nb = nbformat.read(tmp_path / "out" / "a.ipynb", as_version=4)
    assert nb.cells[1].outputs[0]["text"] == "found\n"
    assert "a.ipynb" in done.stdout and not nbformat.read(tmp_path / "a.ipynb", as_version=4).cells[1].outputs


@pytest.mark.slow  # real kernels
def test_a_failing_cell_is_named_in_one_line(tmp_path):
    write_notebook(tmp_path / "bad.ipynb", ["x = 1", "raise ValueError('the data are missing')"])
    done = run("--out-dir", tmp_path / "out", tmp_path / "bad.ipynb")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'bad.ipynb'}: ValueError")
    assert "the data are missing" in done.stderr.strip().splitlines()[-1]
    missing = run(tmp_path / "nothing.ipynb")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_papermill_finds_the_course_engine_and_it_waits_in_slices(monkeypatch):
    from jupyter_client.channels import AsyncZMQSocketChannel
    from papermill.engines import NBClientEngine, papermill_engines

    engine = papermill_engines.get_engine("course")  # registered by pyproject.toml's entry point
    assert issubclass(engine, NBClientEngine) and engine.__qualname__ == "CourseEngine"
    monkeypatch.setattr(
        AsyncZMQSocketChannel,
        "get_msg",
        getattr(AsyncZMQSocketChannel.get_msg, "original", None) or AsyncZMQSocketChannel.get_msg,
    )
    assert not hasattr(AsyncZMQSocketChannel.get_msg, "original")
    monkeypatch.setattr(NBClientEngine, "execute_managed_notebook", classmethod(lambda cls, *a, **k: "executed"))
    assert engine.execute_managed_notebook(None, "python3") == "executed"
    assert hasattr(AsyncZMQSocketChannel.get_msg, "original")  # the fix is on while papermill runs


def notebook_with_widgets(models):
    """A notebook whose saved widget state holds ``models`` {id: (model name, state)}."""
    import nbformat

    from helpers.headless import WIDGET_STATE

    nb = nbformat.v4.new_notebook()
    state = {key: {"model_name": name, "state": fields} for key, (name, fields) in models.items()}
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": state}}
    return nb


def test_a_progress_bar_is_saved_with_its_final_text():
    import nbformat

    from helpers.headless import WIDGET_VIEW, settle_progress_bars

    nb = notebook_with_widgets(
        {
            "bar": ("HBoxModel", {"children": ["IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"]}),
            "l": ("HTMLModel", {"value": "epoch 1/4: 100%"}),
            "p": ("FloatProgressModel", {"value": 212.0, "max": 212.0}),
            "r": ("HTMLModel", {"value": " 212/212 [00:28&lt;00:00,  7.50batch/s]"}),
            "box": ("VBoxModel", {"children": ["IPY_MODEL_l"]}),
        }
    )
    stale = "epoch 1/4:   0%|          | 0/212 [00:00<?, ?batch/s]"
    nb.cells = [
        nbformat.v4.new_code_cell(
            outputs=[
                nbformat.v4.new_output("display_data", {WIDGET_VIEW: {"model_id": m}, "text/plain": stale})
                for m in ("bar", "box")
            ]
        )
    ]
    settle_progress_bars(nb)
    bar, other = nb.cells[0].outputs
    assert bar["data"]["text/plain"] == "epoch 1/4: 100%|██████████| 212/212 [00:28<00:00,  7.50batch/s]"
    assert other["data"]["text/plain"] == stale  # not a tqdm bar: left as it is


def test_an_interact_is_saved_as_its_first_output_under_a_line_naming_its_controls():
    import nbformat

    from helpers.headless import WIDGET_VIEW, picture_widgets

    shown = [
        {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}, "metadata": {}},
        {"output_type": "stream", "name": "stdout", "text": "a man in a red shirt\n"},
    ]
    nb = notebook_with_widgets(
        {
            "box": ("VBoxModel", {"children": ["IPY_MODEL_t", "IPY_MODEL_s", "IPY_MODEL_x", "IPY_MODEL_o"]}),
            "t": ("FloatSliderModel", {"description": "temperature"}),
            "s": ("IntSliderModel", {"description": "seed"}),
            "x": ("TextModel", {"description": ""}),
            "o": ("OutputModel", {"outputs": shown}),
            "manual": ("VBoxModel", {"children": ["IPY_MODEL_t", "IPY_MODEL_b", "IPY_MODEL_empty"]}),
            "b": ("ButtonModel", {"description": "Run Interact"}),
            "empty": ("OutputModel", {"outputs": []}),
            "bar": ("HBoxModel", {"children": ["IPY_MODEL_s"]}),
        }
    )
    text = "interactive(children=(FloatSlider(value=0.8, description='temperature'), ...))"
    nb.cells = [
        nbformat.v4.new_code_cell(
            outputs=[nbformat.v4.new_output("display_data", {WIDGET_VIEW: {"model_id": m}, "text/plain": text})]
        )
        for m in ("box", "manual", "bar")
    ]
    picture_widgets(nb)
    nbformat.validate(nb)
    first, manual, bar = (cell.outputs for cell in nb.cells)
    line = "The controls (temperature, seed, Text) appear when this cell runs; what they showed first:"
    assert first[0]["data"]["text/plain"] == line
    assert first[0]["data"]["text/markdown"] == f"*{line}*"
    assert [o["output_type"] for o in first[1:]] == ["display_data", "stream"]
    assert first[1]["data"]["image/png"] == "iVBOR" and first[2]["text"] == "a man in a red shirt\n"
    assert "Run button" in manual[0]["data"]["text/plain"] and len(manual) == 1
    assert bar[0]["data"][WIDGET_VIEW] == {"model_id": "bar"}  # not an interact: kept


@pytest.mark.slow  # a real kernel
def test_a_notebook_with_an_interact_is_saved_without_the_widgets_text_form(tmp_path):
    import nbformat

    code = 'import ipywidgets as w\nw.interact(lambda n: print("n is", n), n=w.IntSlider(value=3, description="n"));'
    write_notebook(tmp_path / "nb.ipynb", [code])
    done = run(tmp_path / "nb.ipynb", "--out-dir", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    outputs = nbformat.read(tmp_path / "out" / "nb.ipynb", as_version=4).cells[0].outputs
    assert "interactive(" not in str(outputs)
    assert outputs[0]["data"]["text/plain"].startswith("The controls (n) appear when this cell runs")
    assert outputs[1]["text"] == "n is 3\n"


def test_nbval_cells_are_marked_slow_by_the_course_plugin():
    notebook = next((PROJECT_ROOT / "notebooks").glob("01_*.ipynb"))
    args = ["--collect-only", "-q", "-p", "no:cacheprovider", "--nbval-lax", str(notebook)]
    fast = subprocess.run([sys.executable, "-m", "pytest", *args, "-m", "not slow"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)  # fmt: skip
    slow = subprocess.run([sys.executable, "-m", "pytest", *args, "-m", "slow"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)  # fmt: skip
    assert "deselected" in fast.stdout and "::Cell" not in fast.stdout, fast.stdout
    assert slow.stdout.count("::Cell") >= 10, slow.stdout
