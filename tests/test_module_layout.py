"""The helper package's dependencies point one way: notebooks and the command line -> the
training module -> the models -> features, text; nothing imports the command line; the data,
text, metrics and configuration modules import no TensorFlow; the models hold no TensorFlow
(only the CRNN's train step does)."""

import ast
import json
import subprocess
import sys

import pytest

from helpers import PROJECT_ROOT

HELPERS = PROJECT_ROOT / "helpers"


def imported_modules(path):
    """(module, function it is imported in or None) for every import in a helpers module."""
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            inside = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Import):
                found.extend((alias.name, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:  # from .x import y, from keras import ops
                found.append((("helpers." if child.level else "") + child.module, inside))
            elif isinstance(child, ast.ImportFrom):  # from . import x
                found.extend((f"helpers.{alias.name}", inside) for alias in child.names)
            visit(child, inside)

    visit(ast.parse(path.read_text()), None)
    return found


def test_nothing_imports_the_command_line():
    for path in HELPERS.glob("*.py"):
        if path.stem != "train":
            assert "helpers.train" not in [m for m, _ in imported_modules(path)], path.name
    for notebook in sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "from helpers.train import" not in code and "import helpers.train" not in code, notebook.name


@pytest.mark.parametrize("module", ["captioner", "attention", "crnn", "teacher_forcing"])
def test_tensorflow_appears_in_the_models_only_inside_a_train_step(module):
    for name, function in imported_modules(HELPERS / f"{module}.py"):
        if name.split(".")[0] == "tensorflow":
            assert function in ("make_ctc_train_step", "make_train_step"), (module, function)


def test_data_archives_text_metrics_config_run_folder_and_the_command_line_import_no_tensorflow():
    code = (
        "import sys, helpers.data, helpers.archives, helpers.text, helpers.metrics, helpers.config, "
        "helpers.run_folder, helpers.train; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
