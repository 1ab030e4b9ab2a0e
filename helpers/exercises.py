"""Student copies of the notebooks, and check cells that wait for a student's code.

    python -m helpers.exercises [--out-dir build/student] NOTEBOOK [NOTEBOOK ...]   # make student

In the course's notebooks each from-scratch solution sits between nbgrader's markers, with a
one-line hint after the first::

    def rnn_step_forward(x, prev_h, Wx, Wh, b):
        ### BEGIN SOLUTION hint: tanh of x and prev_h, each through its weights, plus b
        next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
        ...
        ### END SOLUTION

A student copy replaces each such region by one ``raise NotImplementedError`` that names the
function and gives the hint, and starts with no outputs. Its check cells run their comparison
``with when_written():``, which turns "not written yet" into one printed sentence, so the
copy still runs top to bottom: what follows a check uses the reference in ``helpers``.
"""

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
NOT_WRITTEN = "is not written yet"
STUDENT_NOTE = (
    "> **Student copy.** Each `raise NotImplementedError` below marks code for you to write, with a hint. "
    "A check cell says when what it checks is not written yet; the rest of the notebook runs anyway, "
    "on the reference in `helpers`. The full notebook is `notebooks/{name}`."
)

NOTHING_TO_WRITE = (
    "> **Student copy.** This notebook has no code for you to write from scratch: it is here so that "
    "`build/student/` holds the whole course. The full notebook is `notebooks/{name}`."
)


class SolutionMarkerError(ValueError):
    """A ``### BEGIN SOLUTION`` without its end, an end without a beginning, or no hint."""


def _enclosing_function(lines, index, indent):
    """The name of the ``def`` that the line at ``index`` (indented ``indent``) belongs to."""
    for line in reversed(lines[:index]):
        match = re.match(r"(\s*)def (\w+)\(", line)
        if match and len(match.group(1)) < len(indent):
            return match.group(2)
    return None


def student_source(source, where="cell"):
    """``source`` (a code cell's text) with every marked solution replaced by a
    ``raise NotImplementedError`` naming its function and hint; returns (text, regions)."""
    lines, out, regions = source.split("\n"), [], 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if END in line:
            raise SolutionMarkerError(f"{where}, line {i + 1}: {END!r} without a {BEGIN!r} before it")
        if BEGIN not in line:
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        hint = line.split(BEGIN, 1)[1].strip().removeprefix("hint:").strip()
        if not hint:
            raise SolutionMarkerError(f"{where}, line {i + 1}: {BEGIN!r} needs a hint after it ('{BEGIN} hint: ...')")
        end = next((j for j in range(i + 1, len(lines)) if END in lines[j]), None)
        if end is None or any(BEGIN in lines[j] for j in range(i + 1, end)):
            raise SolutionMarkerError(f"{where}, line {i + 1}: {BEGIN!r} is not closed by {END!r}")
        name = _enclosing_function(lines, i, indent) or "this cell's code"
        message = f"{name} {NOT_WRITTEN} (hint: {hint})"
        out.append(f"{indent}raise NotImplementedError({message!r})")
        regions += 1
        i = end + 1
    return "\n".join(out), regions


def student_notebook(nb, name="the notebook"):
    """A student copy of ``nb`` (a notebook as a dict, as ``json.load`` reads it): solutions
    replaced, outputs and saved widget state cleared, a note on top. Returns (copy, regions)."""
    copy = json.loads(json.dumps(nb))
    regions = 0
    for index, cell in enumerate(copy["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        text, found = student_source(source, where=f"{name}, cell {index}")
        cell["source"], cell["outputs"], cell["execution_count"] = text, [], None
        cell["metadata"].pop("execution", None)
        regions += found
    copy["metadata"].pop("widgets", None)
    text = STUDENT_NOTE if regions else NOTHING_TO_WRITE
    note = {"cell_type": "markdown", "metadata": {}, "source": text.format(name=name)}
    if (copy.get("nbformat"), copy.get("nbformat_minor", 0)) >= (4, 5):  # cells carry ids from 4.5 on
        note["id"] = "student-copy-note"
    copy["cells"].insert(1 if copy["cells"] and copy["cells"][0]["cell_type"] == "markdown" else 0, note)
    return copy, regions


@contextlib.contextmanager
def when_written():
    """Run a check cell's comparison if the student's code is written: where a function
    still raises the student copy's ``NotImplementedError``, print that in one sentence and
    go on (any other error is raised as usual)."""
    try:
        yield
    except NotImplementedError as err:
        if NOT_WRITTEN not in str(err):
            raise
        print(
            f"Not checked: {err}; write it, then rerun its cell and this one (meanwhile the cells below use helpers')."
        )


def written_or(yours, reference):
    """``yours``, or where it is not written yet (a student copy's stub) ``reference``, said
    once: for the cells that use a student's function after its check."""
    use = [yours]

    def call(*args, **kwargs):
        try:
            return use[0](*args, **kwargs)
        except NotImplementedError as err:
            if use[0] is reference or NOT_WRITTEN not in str(err):
                raise
            where = "" if reference.__module__ == "__main__" else f"{reference.__module__}."
            print(f"{str(err).split(' (hint')[0]}: using {where}{reference.__qualname__} instead.")
            use[0] = reference
            return reference(*args, **kwargs)

    return call


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m helpers.exercises", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out-dir", type=Path, default=Path("build/student"), help="default build/student/")
    args = parser.parse_args(argv)
    from helpers import write_atomic

    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in args.notebooks:
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
            copy, regions = student_notebook(nb, name=path.name)
        except (OSError, ValueError) as err:
            parser.exit(1, f"error: {path}: {err}\n")
        text = json.dumps(copy, indent=1, ensure_ascii=False) + "\n"
        write_atomic(args.out_dir / path.name, lambda f, text=text: f.write(text.encode("utf-8")))
        print(f"{path.name}: {regions} solution{'s' if regions != 1 else ''} to write -> {args.out_dir / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
