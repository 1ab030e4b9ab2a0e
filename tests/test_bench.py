"""Each bench/ script, run small: it finishes and ends with the JSON line the README promises
(no timing is asserted: only that both sides were measured and the ratio is theirs)."""

import json
import os
import subprocess
import sys

import pytest

from helpers import PROJECT_ROOT

pytestmark = pytest.mark.slow  # each test runs a benchmark script

ONE_ROUND = ["--steps", "1", "--images-per-batch", "2", "--rounds", "1"]  # a process per side, once
CASES = {
    "feature_cache.py": (["--images", "8", "--size", "32"], ("extract_s", "cache_hit_s")),
    "captions_per_image.py": (ONE_ROUND, ("every_caption_ms", "some_captions_ms")),
    "attention_context.py": (ONE_ROUND, ("einsum_ms", "matmul_ms")),
    "train_step.py": (["--steps", "1", "--images-per-batch", "2", "3"], ("eager_ms", "compiled_ms")),
    "beam_search.py": (["--images", "4", "--repeats", "1", "--max-len", "5", "--run-dir", "no_such_run"], None),
    "full_scale.py": (
        [
            "--captions",
            "data/captions/flickr30k_karpathy_test.token",
            "--encoder",
            "mobilenet_v3_small",
            "--image-size",
            "32",
            "--steps",
            "1",
        ],
        ("fine_tune_step_ms", "feature_step_ms"),
    ),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_a_bench_script_ends_with_its_ratio(script):
    args, timings = CASES[script]
    ends_with_its_ratio(script, args, *(timings or (None, None)))


def test_real_scale_ends_with_its_ratio(shared_data):
    # the real captions' first 300 images, all in the Karpathy training split
    captions = shared_data / "flickr30k" / "captions_karpathy.token"
    args = ["--captions", str(captions), "--limit", "300", "--feature-images", "4"]
    result = ends_with_its_ratio("real_scale.py", args, "extract_ms_per_image", "cache_hit_ms_per_image")
    assert result["images"] == 300 and result["captions"] == 1500
    assert set(result["steps"]) == {
        "load_flickr30k",
        "vocabulary (train split, min 5)",
        "input pipeline, one epoch",
        "features: extraction",
        "features: cache hit",
    }


def test_defaults_time_runs_an_earlier_commits_defaults_beside_this_trees(mini_root):
    # one epoch on the small dataset, both sides trained and scored; HEAD, which even a shallow clone holds
    args = ["--then", "HEAD", "--epochs", "1", "--data", str(mini_root)]
    result = ends_with_its_ratio("defaults_time.py", args, "then_s", "now_s")
    assert result["model"] == "attention" and result["then"] == "HEAD"


def test_defaults_time_names_a_commit_it_cannot_export():
    done = subprocess.run(
        [sys.executable, "bench/defaults_time.py", "--then", "no-such-commit"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=60,
    )
    assert done.returncode == 1 and "cannot export commit 'no-such-commit'" in done.stderr


def ends_with_its_ratio(script, args, numerator=None, denominator=None):
    """Run bench/``script``; its last line is a JSON object ending with "ratio", numerator / denominator."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(result)[-1] == "ratio" and result["ratio"] > 0
    if numerator:  # the ratio is the two timings' (to their printed rounding)
        assert result["ratio"] == pytest.approx(result[numerator] / result[denominator], rel=0.05, abs=0.1)
    return result


def test_full_scale_runs_under_jax_where_tensorflow_is_missing():
    # as on the lent GPU machine: Keras on JAX, and no TensorFlow to import
    pytest.importorskip("jax")
    script = (
        "import runpy, sys\n"
        "class NoTensorFlow:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'tensorflow':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, NoTensorFlow())\n"
        f"sys.argv = ['bench/full_scale.py', *{CASES['full_scale.py'][0]!r}]\n"
        "runpy.run_path('bench/full_scale.py', run_name='__main__')\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=600
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax" and result["fine_tune_layers"] == 10
    assert result["ratio"] == pytest.approx(result["fine_tune_step_ms"] / result["feature_step_ms"], rel=0.05, abs=0.1)
