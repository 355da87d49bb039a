import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("LYRICNN_SHARED", ROOT.parent / "shared" / "data"))


def shared_path(*parts):
    """Path under ../shared/data, or skip the test with a clear reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip("needs the shared data set %s (../shared/data beside the checkout); absent here" % p)
    return p


@pytest.fixture
def shared():
    return shared_path
