"""Tiny trained runs (a few steps on the cached 400-jet smoke sample) for the export tests."""
from __future__ import annotations

from hepjax.configs import top_tagging_mlp
from hepjax.models import default_config

TINY_MODELS = {
    "mlp": None,
    "pfn": {"phi_sizes": (16, 16), "f_sizes": (16,)},
    "particlenet": {"conv_params": ((4, (16, 16)), (4, (16, 16))), "fc_params": ((16, 0.1),)},
    "part": {"embed_dims": (16, 16), "pair_embed_dims": (8, 8), "num_heads": 2, "num_layers": 1,
             "num_cls_layers": 1, "ffn_ratio": 2},
    "transformer": {"embed_dims": (16, 16), "pair_embed_dims": (8, 8), "num_heads": 2,
                    "num_layers": 1, "num_cls_layers": 1, "ffn_ratio": 2,
                    "use_pair_features": False},
}


def tiny_config(model: str, num_steps: int = 4, max_particles: int = 24):
    """The smoke top-tagging config with a tiny ``model`` trained ``num_steps`` steps (particle
    models on the first ``max_particles`` particles, with log-transformed, standardised inputs)."""
    c = top_tagging_mlp.get_config("smoke")
    c.optimizer.schedule.warmup_steps = 1
    c.train.update({"num_steps": num_steps, "batch_size": 32, "eval_batch_size": 128,
                    "log_every": num_steps, "eval_every": num_steps, "checkpoint_every": num_steps})
    if model == "mlp":
        c.model.hidden = (16, 16)
        return c
    c.data.representation = "particles"
    c.data.max_particles = max_particles
    c.preprocessing.log_features = ()
    cfg = default_config(model)
    cfg.update(TINY_MODELS[model])
    c.model = cfg
    return c


def init_run(config, workdir, checkpoint: bool = True):
    """A run directory as ``hepjax train`` writes it (config.json, spec.json,
    preprocessing.json and, with ``checkpoint``, a best/ checkpoint) holding the seeded initial
    model: the harness's own pieces without compiling a training step (the export tests need a
    restorable run, not a trained one; tests/export trains the MLP for real)."""
    import pathlib

    from hepjax import config as config_lib
    from hepjax import data as data_lib
    from hepjax.models import model_fn_from_config
    from hepjax.train import experiment
    from hepjax.train import spec as spec_lib
    from hepjax.train.checkpoint import Checkpointer
    from hepjax.train.loop import build_state

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = spec_lib.complete(config)
    splits = data_lib.load_splits(config.data, ("train",))
    fitted = experiment._preprocessing(config, tuple(splits["feature_names"])).fit(
        splits["train"]["features"], splits["train"].get("mask"))
    fitted.save(workdir / "preprocessing.json")
    spec = spec_lib.resolve(config, len(splits["train"]["label"]))
    (workdir / "config.json").write_text(config_lib.to_json(config))
    spec_lib.save(spec, workdir)
    if checkpoint:
        model_fn = model_fn_from_config(config.model, splits["train"]["features"].shape[1:],
                                        experiment._num_outputs(config))
        _, state = build_state(spec, model_fn, experiment._optimizer(config, spec))
        ckpt = Checkpointer(workdir, keep=1)
        ckpt.save_best(0, state, {"step": 0, "early_stopping": {}})
        ckpt.close()
    return workdir
