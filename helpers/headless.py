"""Run notebooks top to bottom without a browser, as ``make run`` does.

    python -m helpers.headless [--timeout S] [--out-dir DIR] NOTEBOOK [NOTEBOOK ...]
    papermill NOTEBOOK OUT --engine course -p NAME VALUE ...   # with parameters

Like ``jupyter nbconvert --to notebook --execute --output-dir DIR``, with one difference
that matters here: after a cell that shows a widget, nbclient sometimes sees the cell's reply
only when its wait for it times out (jupyter/nbclient#312; the reply is on the socket, but
pyzmq's asyncio poll misses the wake-up), which stalled ``make run`` for a whole cell
timeout. Waiting in slices of ``POLL_S`` seconds looks at the socket again after each slice,
so such a reply is seen within a second. papermill runs on nbclient too and stalls the same
way; ``--engine course`` (``CourseEngine``, registered as a papermill engine by this package)
is papermill's own engine with this fix.

It is also a pytest plugin (entry point ``course``) that sets how nbval waits; and it saves
executed notebooks as they should look when opened untrusted (``settle_progress_bars``,
``picture_widgets``).
"""

import argparse
import sys
import time
from pathlib import Path

POLL_S = 1.0


def sliced(get_msg, poll_s=POLL_S):
    """Wrap a channel's ``async get_msg(self, timeout=None)`` so that it waits at most
    ``poll_s`` seconds at a time, until ``timeout`` (None: for ever) has passed; then it
    raises ``queue.Empty``, as the original does."""
    from queue import Empty

    async def get_msg_in_slices(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await get_msg(self, poll_s if left is None else min(poll_s, left))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    get_msg_in_slices.original = get_msg
    return get_msg_in_slices


def wait_in_slices():
    """Patch jupyter_client's asyncio channels (which nbclient and papermill use) so that every
    wait for a kernel message looks at the socket again at least once a second."""
    from jupyter_client.channels import AsyncZMQSocketChannel

    if not hasattr(AsyncZMQSocketChannel.get_msg, "original"):
        AsyncZMQSocketChannel.get_msg = sliced(AsyncZMQSocketChannel.get_msg)


def __getattr__(name):  # CourseEngine needs papermill, a test dependency: built on first use
    if name != "CourseEngine":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from papermill.engines import NBClientEngine

    class CourseEngine(NBClientEngine):
        """papermill's nbclient engine, waiting in slices (``papermill --engine course``)."""

        @classmethod
        def execute_managed_notebook(cls, *args, **kwargs):
            wait_in_slices()
            return super().execute_managed_notebook(*args, **kwargs)

    CourseEngine.__qualname__ = "CourseEngine"
    globals()["CourseEngine"] = CourseEngine
    return CourseEngine


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def widget_parts(nb):
    """A function: an output of ``nb`` -> the saved states (``{"model_name", "state"}``) of the
    parts of the widget it shows, read from the widget state saved with ``nb`` ([] for an
    output that shows no widget, or a widget without parts)."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def model(ref):
        return state.get(str(ref).removeprefix("IPY_MODEL_"), {})

    def parts_of(output):
        view = output.get("data", {}).get(WIDGET_VIEW)
        return [model(c) for c in model(view["model_id"]).get("state", {}).get("children", [])] if view else []

    return parts_of


def settle_progress_bars(nb):
    """Give every tqdm bar's output the bar's final text: tqdm displays a bar once, so its
    plain-text form (what a notebook shows where the widget cannot be drawn, e.g. untrusted)
    would say 0% for good. Read from the widget state saved with ``nb``; returns ``nb``."""
    import html

    parts_of = widget_parts(nb)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts = parts_of(output)
            if [m.get("model_name") for m in parts] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
                continue  # not a tqdm bar
            left, bar, right = (m["state"] for m in parts)
            filled = int(10 * bar["value"] / bar["max"]) if bar.get("max") else 0
            text = f"{left.get('value', '')}|{'█' * filled:<10}|{right.get('value', '')}"
            output["data"]["text/plain"] = html.unescape(text)
    return nb


def picture_widgets(nb):
    """Replace each interactive widget's output (``ipywidgets.interact``: controls above an
    output area) by what its output area first showed, under a line naming the controls: a
    notebook opened untrusted, as a fresh clone's are, cannot draw a saved widget and would
    show its text form (``interactive(children=(FloatSlider(...``). Running the cell brings
    the live controls back. Returns ``nb``."""
    parts_of = widget_parts(nb)
    for cell in nb.cells:
        outputs = []
        for output in cell.get("outputs", []):
            parts = parts_of(output)
            if not parts or parts[-1].get("model_name") != "OutputModel":
                outputs.append(output)  # not an interact (a progress bar, say): kept as it is
                continue
            controls = [
                p["state"].get("description") or p["model_name"].removesuffix("Model")  # a control with no label
                for p in parts[:-1]
                if p.get("model_name") != "ButtonModel"
            ]
            line = f"The controls ({', '.join(controls)}) appear when this cell runs; what they showed first:"
            if any(p.get("model_name") == "ButtonModel" for p in parts):
                line = f"The controls ({', '.join(controls)}) and their Run button appear when this cell runs."
            note = {"text/markdown": f"*{line}*", "text/plain": line}
            outputs.append(nbformat_output("display_data", data=note))
            outputs.extend(nbformat_output(**shown) for shown in parts[-1]["state"].get("outputs", []))
        if "outputs" in cell:
            cell.outputs = outputs
    return nb


def nbformat_output(output_type, **fields):
    """A notebook output from an output dict as a widget's state keeps it (the same fields)."""
    from nbformat.notebooknode import from_dict

    if output_type == "execute_result":  # outside its cell's reply it is a display
        output_type = "display_data"
        fields.pop("execution_count", None)
    if output_type == "display_data":
        fields.setdefault("metadata", {})
    return from_dict({"output_type": output_type, **fields})


def run_notebook(path, out_dir, timeout):
    """Execute ``path`` in a fresh kernel, in its own folder, and write the result to
    ``out_dir``; returns the seconds it took. A failing cell raises nbclient's
    ``CellExecutionError``, which names the cell and the error."""
    import nbformat
    from nbclient import NotebookClient

    wait_in_slices()
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, resources={"metadata": {"path": str(path.parent)}}).execute()
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(picture_widgets(settle_progress_bars(nb)), out_dir / path.name)
    return time.perf_counter() - start


# nbval waits only 5 s (hard-coded) for the kernel's next message after a cell has replied; after
# notebook 06's training cell, which traces a large graph, the kernel has been quiet for longer
# before reporting idle, failing a cell that had finished (with 6 epochs, once even after 60 s).
# The cell timeout itself is unchanged.
NBVAL_OUTPUT_TIMEOUT_S = 300


def pytest_collection_modifyitems(items):
    """pytest hook (this module is a pytest plugin, registered by the package's entry point):
    nbval's notebook cells wait ``NBVAL_OUTPUT_TIMEOUT_S`` for output and are marked slow, so
    ``make test-fast`` leaves them out."""
    import pytest

    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval cell
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S
            item.add_marker(pytest.mark.slow)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m helpers.headless", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds one cell may take (default 600)")
    parser.add_argument(
        "--out-dir", type=Path, default=Path("build"), help="where the executed copies go (default build/)"
    )
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if not path.is_file():
            parser.exit(2, f"error: notebook {path} does not exist\n")
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    for path in args.notebooks:
        print(f"{path.name} ...", end=" ", flush=True)
        try:
            seconds = run_notebook(path, args.out_dir, args.timeout)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
            print("failed")
            what = f"{err.ename}: {err.evalue}" if getattr(err, "ename", None) else str(err).strip().splitlines()[0]
            parser.exit(1, f"error: {path}: {what}\n")
        print(f"{seconds:.0f} s -> {args.out_dir / path.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
