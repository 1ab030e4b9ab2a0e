import os
from pathlib import Path

import pytest

from helpers import PROJECT_ROOT

SHARED_DATA = Path(os.environ.get("COURSE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


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
