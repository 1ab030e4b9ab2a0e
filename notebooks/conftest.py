"""nbval settings for the course's notebooks.

nbval waits only 5 s (hard-coded) for the kernel's next message after a cell has replied. After
notebook 06's training cell, which traces a large unrolled graph, the kernel has gone quiet for
longer than that before reporting idle, failing a cell that had finished (its metrics.json was
written). The cell timeout itself (--nbval-cell-timeout) is unchanged.
"""

OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items):
    import pytest

    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_TIMEOUT_S
            item.add_marker(pytest.mark.slow)  # a notebook's cell: make test-fast leaves them out
