"""A whole training run with the command line's defaults, this tree's code against an earlier
commit's, on this machine.

    python bench/defaults_time.py [--model attention] [--then ac14e3d] [--epochs N] [--data DIR]

The time budget of the captioners' defaults ("about 5 minutes on 2 CPU cores") was set on the
code of ac14e3d, and Show and Tell's defaults have taken from 330 s to 543 s on 2 cores of the
same description on different days and hours (README), so a time means something only beside
another measured on the same machine. Each side runs ``python -m helpers.train --model M``
with its own defaults, in a process of its own, one after the other: ``--then`` from its
commit's files (``git archive``), this tree as it is. Each draws its own embedded dataset
before its clock starts (``--data``: both read that folder instead). The clock covers the
whole run, data to ``metrics.json``. Prints a line per side and, last, a JSON object ending
with "ratio" (then's seconds / now's).
"""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("show_tell", "attention"), default="attention")
    parser.add_argument("--then", default="ac14e3d", help="the earlier commit (default: where the budget was set)")
    parser.add_argument("--epochs", type=int, help="default: each side's own default")
    parser.add_argument("--data", type=Path, help="a dataset folder both sides read (default: each its embedded one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        then_tree = export(args.then, Path(tmp) / "then")
        sides = {"then": (then_tree, args.then), "now": (ROOT, "this tree")}
        results = {}
        for side, (tree, label) in sides.items():
            results[side] = train(tree, args, Path(tmp) / f"{side}_run")
            print(f"{args.model} defaults, {label}: {results[side]['seconds']:.0f} s; {results[side]['scores']}")
    result = {"model": args.model, "then": args.then}
    result.update({f"{side}_s": round(r["seconds"], 1) for side, r in results.items()})
    result["ratio"] = round(results["then"]["seconds"] / results["now"]["seconds"], 2)
    print(json.dumps(result))


def export(commit, folder):
    """The files of ``commit`` in ``folder`` (``git archive``), or one sentence why not."""
    try:
        done = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True)
    except FileNotFoundError:
        sys.exit(f"cannot export commit {commit!r}: git is not installed")
    if done.returncode:
        why = done.stderr.decode().strip().splitlines()[-1]
        sys.exit(f"cannot export commit {commit!r} from {ROOT}: {why} (a shallow clone lacks older commits)")
    folder.mkdir(parents=True)
    archive = folder.with_suffix(".tar")
    archive.write_bytes(done.stdout)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder


def train(tree, args, out):
    """{"seconds": the whole run, "scores": a few of its test scores} of the defaults of ``tree``'s code."""
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0")
    data = ["--data", str(args.data)] if args.data else []
    if not args.data:  # drawn before the clock starts (a run that finds it skips drawing it)
        run([sys.executable, "-c", "from helpers.data import find_dataset; find_dataset()"], tree, env)
    command = [sys.executable, "-m", "helpers.train", "--model", args.model, "--out", str(out), *data]
    command += ["--epochs", str(args.epochs)] if args.epochs else []
    start = time.perf_counter()
    run(command, tree, env)
    seconds = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    scores = {"bleu4_greedy": round(metrics["greedy"]["bleu4"], 3), "epochs": metrics.get("epochs")}
    if "scene" in metrics:  # older code did not measure it
        scores["scene_exact_greedy"] = round(metrics["scene"]["greedy"]["exact"], 2)
    return {"seconds": seconds, "scores": scores}


def run(command, tree, env):
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed in {tree}:\n{done.stderr[-3000:]}")


if __name__ == "__main__":
    main()
