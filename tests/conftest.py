import os
from pathlib import Path

import pytest

from helpers import PROJECT_ROOT

SHARED_DATA = Path(os.environ.get("COURSE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data_path():
    """Where the real caption files would be (../shared/data); it may be absent: the test decides."""
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_data():
    """The real caption files beside the project (../shared/data); skip where absent."""
    if not (SHARED_DATA / "flickr30k").is_dir():
        pytest.skip(f"real caption files not found in {SHARED_DATA} (set COURSE_SHARED_DATA to their folder)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mini_root(tmp_path_factory):
    """A small embedded dataset shared by the tests that only read it."""
    from helpers.data import make_mini_flickr

    return make_mini_flickr(tmp_path_factory.mktemp("mini") / "mini_flickr", n_images=120, seed=3)


@pytest.fixture(scope="session")
def tiny_attention():
    """Small Show-Attend-Tell models for the tests: ``tiny_attention(vocab_size=12, cls=..., **options)``,
    a 4 x 4 grid of 8 features on 32 px images (options override these sizes)."""
    from helpers.attention import ShowAttendTell

    sizes = {"embed_dim": 8, "hidden": 16, "attention_dim": 8, "feature_dim": 8, "image_size": 32, "cnn_width": 4}

    def make(vocab_size=12, cls=ShowAttendTell, **options):
        return cls(vocab_size, **{**sizes, **options})

    return make
