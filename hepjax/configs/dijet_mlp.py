"""A dijet-resonance classifier: an MLP on ten high-level dijet observables.

Data: ``hepjax.data.dijet`` (X(1500 GeV) -> jj vs QCD dijets, generated on the fly).
Variants: ``get_config()`` the demo (60k training events, 3000 steps);
``get_config("smoke")`` a few-second run for CI.
"""
import ml_collections


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

    c.model = ml_collections.ConfigDict()
    c.model.name = "mlp"
    c.model.hidden = (128, 128, 128)
    c.model.activation = "relu"
    c.model.dropout = 0.1
    c.model.norm = ""
    c.model.residual = False
    c.model.num_classes = 2

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 2e-3
    c.optimizer.weight_decay = 1e-4
    c.optimizer.clip_norm = 1.0
    c.optimizer.schedule = ml_collections.ConfigDict({"name": "warmup_cosine", "warmup_steps": 100})

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 3000
    c.train.batch_size = 256
    c.train.eval_batch_size = 2048
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 2
    c.train.restore_step = 0   # resume from: 0 = the newest intact checkpoint, or that step
    c.train.ensemble_size = 1
    c.train.num_devices = 1  # 0: all devices (required with several processes)
    c.train.precision = "float32"  # or "bfloat16": bf16 forward pass, fp32 params/optimiser/loss
    c.train.tensorboard = False
    c.train.early_stopping = ml_collections.ConfigDict(
        {"metric": "loss", "mode": "min", "patience": 4, "min_delta": 0.0, "restore_best": True})

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
