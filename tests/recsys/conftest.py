import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """PPR caches go to the test's folder, never to the user's ~/.cache."""
    monkeypatch.setenv("RANKOPT_CACHE", str(tmp_path / "cache"))
