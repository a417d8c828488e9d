"""Every landscape tagger trains on generated top-tagging jets (the configs' smoke variants)."""
import json
import math

import pytest

pytest.importorskip("pythia8mc", reason="generated top-tagging data need the 'gen' extra")

from hepjax import config as config_lib  # noqa: E402
from hepjax.train import experiment  # noqa: E402
from hepjax.train.logging import read_metrics  # noqa: E402

from experiments.top_tagging.config import MODELS  # noqa: E402


@pytest.mark.parametrize("model", MODELS)
def test_tagger_trains_on_generated_top_jets(model, tmp_path):
    config = config_lib.load_config(f"experiments/top_tagging/config.py:{model},smoke")
    result = experiment.train(config, tmp_path, progress=False)
    assert 0.0 <= result["auc"] <= 1.0 and math.isfinite(result["loss"])
    train = read_metrics(tmp_path, "train")
    assert len(train) == 2 and all(math.isfinite(r["loss"]) for r in train)
    assert json.loads((tmp_path / "config.json").read_text())["model"]["name"] == model
