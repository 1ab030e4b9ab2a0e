"""Student copies (helpers.exercises, `make student`): solutions replaced by a stub with a hint,
check cells that say what is not written yet, and copies that still run top to bottom."""

import ast
import json
import re
import subprocess
import sys

import pytest

from helpers import PROJECT_ROOT
from helpers.exercises import (
    BEGIN,
    END,
    SolutionMarkerError,
    student_notebook,
    student_source,
    when_written,
    written_or,
)

NOTEBOOKS = PROJECT_ROOT / "notebooks"
WITH_SOLUTIONS = ["01", "02", "03", "05", "06", "07"]

SOURCE = f"""import numpy as np


def step(x, h):
    # x (N, D)
    {BEGIN} hint: tanh of the sum
    y = np.tanh(x + h)
    return y
    {END}


def other():
    return 1
"""


def test_a_marked_solution_becomes_one_raise_naming_the_function_and_its_hint():
    text, regions = student_source(SOURCE)
    assert regions == 1
    assert "np.tanh(x + h)" not in text and BEGIN not in text and END not in text
    assert "    raise NotImplementedError('step is not written yet (hint: tanh of the sum)')" in text.splitlines()
    assert "def other():\n    return 1" in text  # what is outside the markers stays
    namespace = {}
    exec(compile(text, "<student>", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="step is not written yet"):
        namespace["step"](1, 2)


@pytest.mark.parametrize(
    "source, message",
    [
        (f"x = 1\n{BEGIN} hint: h\nx = 2\n", "is not closed"),
        (f"x = 1\n{END}\n", "without a"),
        (f"{BEGIN}\nx = 2\n{END}\n", "needs a hint"),
        (f"{BEGIN} hint: a\n{BEGIN} hint: b\n{END}\n", "is not closed"),
    ],
)
def test_broken_markers_are_one_sentence_naming_the_line(source, message):
    with pytest.raises(SolutionMarkerError, match=rf"cell 3, line \d+: .*{message}"):
        student_source(source, where="cell 3")


def test_when_written_turns_a_stub_into_one_sentence_and_lets_other_errors_through(capsys):
    with when_written():
        print("before")
        raise NotImplementedError("step is not written yet (hint: h)")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "before" and len(out) == 2
    assert out[1].startswith("Not checked: step is not written yet (hint: h);")
    with pytest.raises(NotImplementedError, match="a library's own"):
        with when_written():
            raise NotImplementedError("a library's own")
    with pytest.raises(ValueError):
        with when_written():
            raise ValueError("wrong shape")
    with when_written():
        print("all written")
    assert capsys.readouterr().out == "all written\n"


def test_written_or_falls_back_to_the_reference_once_and_says_so(capsys):
    def stub(x):
        raise NotImplementedError("double is not written yet (hint: x + x)")

    def reference(x):
        return 2 * x

    use = written_or(stub, reference)
    assert [use(1), use(2)] == [2, 4]
    assert capsys.readouterr().out.count("double is not written yet: using") == 1
    assert written_or(lambda x: x + x + 1, reference)(1) == 3  # a written one is used as it is

    def broken(x):
        raise NotImplementedError("something else")

    with pytest.raises(NotImplementedError, match="something else"):
        written_or(broken, reference)(1)


def notebook(prefix):
    return next(NOTEBOOKS.glob(f"{prefix}_*.ipynb"))


@pytest.mark.parametrize("prefix", WITH_SOLUTIONS)
def test_every_from_scratch_notebook_has_solutions_and_its_student_copy_is_valid_python(prefix):
    nb = json.loads(notebook(prefix).read_text())
    copy, regions = student_notebook(nb, name=notebook(prefix).name)
    assert regions >= 1
    stubs = 0
    for cell in copy["cells"]:
        assert cell.get("outputs", []) == []
        if cell["cell_type"] != "code":
            continue
        code = "\n".join(line for line in cell["source"].split("\n") if not line.lstrip().startswith("%"))
        ast.parse(code)  # a stub that breaks the cell's syntax fails here
        stubs += len(re.findall(r"raise NotImplementedError\((['\"])\w+ is not written yet \(hint: .+\)\1\)", code))
    assert stubs == regions
    assert "widgets" not in copy["metadata"]
    assert "marks code for you to write" in copy["cells"][1]["source"]
    # each cell of stubs is checked by a later cell that waits for it (calling one of its functions)
    cells = [c["source"] for c in copy["cells"] if c["cell_type"] == "code"]
    for i, source in enumerate(cells):
        names = re.findall(r"raise NotImplementedError\(\W+(\w+) is not written yet", source)
        checks = [c for c in cells[i + 1 :] if "with when_written():" in c]
        assert not names or any(f"{name}(" in c for c in checks for name in names), f"{names}: no check cell"


def test_make_student_writes_copies_and_names_what_is_missing(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "helpers.exercises", "--out-dir", str(tmp_path), str(notebook("01"))],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "01_rnn_basics.ipynb: 2 solutions to write" in done.stdout
    assert (tmp_path / notebook("01").name).is_file()
    bad = tmp_path / "bad.ipynb"
    bad.write_text(json.dumps({"cells": [{"cell_type": "code", "source": f"{BEGIN} hint: x\n", "metadata": {}}],
                               "metadata": {}}))  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "helpers.exercises", "--out-dir", str(tmp_path / "out"), str(bad)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {bad}: bad.ipynb, cell 0, line 1: '{BEGIN}' is not closed by '{END}'"


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["01", "02", "03"])
def test_a_student_copy_runs_top_to_bottom_and_each_check_says_what_is_not_written(prefix, tmp_path):
    from helpers.headless import run_notebook

    source = notebook(prefix)
    copy, _ = student_notebook(json.loads(source.read_text()), name=source.name)
    path = tmp_path / "student" / source.name
    path.parent.mkdir()
    path.write_text(json.dumps(copy))
    run_notebook(path, tmp_path / "out", timeout=600)
    executed = json.loads((tmp_path / "out" / source.name).read_text())
    for cell in executed["cells"]:
        if cell["cell_type"] != "code" or "with when_written():" not in "".join(cell["source"]):
            continue
        printed = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o["output_type"] == "stream")
        assert re.search(r"Not checked: \w+ is not written yet \(hint: ", printed), "".join(cell["source"])[:200]
        assert "OK" not in printed  # nothing of the student's was compared


def test_a_notebook_without_solutions_is_copied_with_a_note_that_says_so():
    nb = json.loads(notebook("04").read_text())
    copy, regions = student_notebook(nb, name="04.ipynb")
    assert regions == 0
    assert "no code for you to write" in copy["cells"][1]["source"]
    assert ["".join(c["source"]) for c in copy["cells"][2:]] == ["".join(c["source"]) for c in nb["cells"][1:]]
