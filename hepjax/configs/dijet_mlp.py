"""A dijet-resonance classifier: an MLP on ten high-level dijet observables.

Data: ``hepjax.data.dijet`` (X(1500 GeV) -> jj vs QCD dijets, generated on the fly).
Variants: ``get_config()`` the demo (60k training events, 3000 steps);
``get_config("smoke")`` a few-second run for CI.
"""
import ml_collections

from hepjax.configs import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "binary"

    c.data = ml_collections.ConfigDict()
    c.data.name = "dijet_resonance"
    c.data.path = ""
    c.data.seed = 1000
    c.data.n_train = 60_000
    c.data.n_val = 10_000
    c.data.n_test = 20_000

    c.preprocessing = ml_collections.ConfigDict()
    c.preprocessing.log_features = ("mjj", "pt1", "pt2", "pt_jj", "chi")
    c.preprocessing.standardize = True

    c.model = defaults.mlp((128, 128, 128))
    c.optimizer = defaults.adamw_warmup_cosine(2e-3)
    c.train = defaults.train(num_steps=3000, batch_size=256, eval_batch_size=2048)

    if arg == "smoke":
        c.data.n_train, c.data.n_val, c.data.n_test = 4096, 1024, 1024
        c.model.hidden = (32, 32)
        c.train.num_steps = 60
        c.train.batch_size = 128
        c.train.eval_batch_size = 512
        c.train.log_every = 10
        c.train.eval_every = 20
        c.train.checkpoint_every = 20
        c.optimizer.schedule.warmup_steps = 10
    elif arg:
        raise ValueError(f"dijet_mlp: unknown variant {arg!r}; use '' or 'smoke'")
    return c
