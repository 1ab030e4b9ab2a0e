"""The committed notebooks as JupyterLab opens them from a fresh clone (untrusted): no widget
shown as its text form, no stale progress bar, the kernelspec ipykernel writes (so opening
changes nothing), and recorded runtimes that are the work's, with no idle stall between cells."""

import json
from datetime import datetime

import pytest

from helpers import PROJECT_ROOT
from helpers.headless import WIDGET_VIEW

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("[0-9]*.ipynb"))


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.name[:2])
def notebook(request):
    return json.loads(request.param.read_text())


def outputs(nb):
    for cell in nb["cells"]:
        yield from cell.get("outputs", [])


def test_the_kernelspec_is_the_one_ipykernel_writes(notebook):
    from ipykernel.kernelspec import KERNEL_NAME, get_kernel_dict

    expected = get_kernel_dict()
    spec = notebook["metadata"]["kernelspec"]
    assert spec == {"display_name": expected["display_name"], "language": expected["language"], "name": KERNEL_NAME}


def test_no_widget_would_show_as_its_text_form(notebook):
    for output in outputs(notebook):
        plain = "".join(output.get("data", {}).get("text/plain", ""))
        assert "interactive(children=" not in plain and "VBox(children=" not in plain
        if WIDGET_VIEW in output.get("data", {}):  # what remains are tqdm bars, shown as their final text
            assert "%|" in plain and not plain.lstrip().startswith("0%") and "  0%|" not in plain, plain


def test_every_code_cell_was_run_in_order_with_no_idle_gap_over_ten_seconds(notebook):
    def when(stamp):
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    times = [c["metadata"]["execution"] for c in code]
    for before, after in zip(times, times[1:]):
        gap = (when(after["iopub.execute_input"]) - when(before["shell.execute_reply"])).total_seconds()
        assert 0 <= gap <= 10, gap


def test_every_exercise_has_a_hint_and_an_answer_folded_under_it(notebook):
    import re

    text = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    exercises = text.split("## Exercises", 1)[1].split("\n## ", 1)[0]
    numbers = re.findall(r"^\*\*(\d+)\.\*\* ", exercises, flags=re.M)
    assert numbers and numbers == [str(i) for i in range(1, len(numbers) + 1)]
    blocks = re.findall(r"<details><summary>Hint and answer</summary>(.*?)</details>", exercises, flags=re.S)
    assert len(blocks) == len(numbers)
    for block in blocks:
        assert re.search(r"\*Hint\.\* \S", block) and re.search(r"\*Answer\.\* \S", block), block
