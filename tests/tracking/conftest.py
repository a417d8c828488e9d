"""The shared TrackML event (../shared/data/trackml_event_gnn_tracking) for the tracking tests."""
import pytest


@pytest.fixture(scope="module")
def event_dir(shared_data):
    """The event's folder; skips with a clear message when its files are absent."""
    d = shared_data / "trackml_event_gnn_tracking"
    for name in ("event000000001-hits.csv.gz", "detectors.csv.gz"):
        if not (d / name).exists():
            pytest.skip(f"{d / name} not found: the TrackML event is needed")
    return d
