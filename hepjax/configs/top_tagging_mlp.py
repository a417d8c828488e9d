"""A top tagger: an MLP on jet observables (mass, pT, eta, N constituents, N-subjettiness
tau1..3, tau21, tau32, C2, D2).

Data: ``hepjax.data.top_tagging`` — with ``data.path`` empty, Pythia 8 ttbar and QCD jets
(14 TeV, anti-kt R = 0.8, 550 < pT < 650 GeV, |eta| < 2, fast detector) generated once and cached
under ``data.cache_dir`` (default ``$HEPJAX_CACHE`` or ``~/.cache/hepjax``); or set ``data.path`` to
the Top Tagging Reference Dataset directory (train.h5, val.h5, test.h5).
Variants: ``get_config()`` the demo (6000 jets: 60% train, 20% val, 20% test);
``get_config("smoke")`` a CI run on 400 jets.
"""
import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "binary"

    c.data = ml_collections.ConfigDict()
    c.data.name = "top_tagging"
    c.data.path = ""
    c.data.cache_dir = ""
    c.data.seed = 2024
    c.data.n_jets = 6000
    c.data.detector = "fast"
    c.data.mpi = False   # multi-parton interactions: off, as in the reference dataset
    c.data.workers = 2
    c.data.events_per_chunk = 200
    c.data.representation = "jet_observables"
    c.data.observables = ("mass", "pt", "eta", "n_constituents", "tau1", "tau2", "tau3", "tau21",
                          "tau32", "c2", "d2")
    c.data.max_particles = 200
    c.data.radius = 0.8
    c.data.image_size = 40

    c.preprocessing = ml_collections.ConfigDict()
    c.preprocessing.log_features = ("mass", "pt")
    c.preprocessing.standardize = True

    c.model = ml_collections.ConfigDict()
    c.model.name = "mlp"
    c.model.hidden = (64, 64, 64)
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
    c.train.num_steps = 2000
    c.train.batch_size = 128
    c.train.eval_batch_size = 1024
    c.train.log_every = 100
    c.train.eval_every = 200
    c.train.checkpoint_every = 200
    c.train.keep_checkpoints = 2
    c.train.restore_step = 0   # resume from: 0 = the newest intact checkpoint, or that step
    c.train.ensemble_size = 1
    c.train.num_devices = 1
    c.train.tensorboard = False
    c.train.early_stopping = ml_collections.ConfigDict(
        {"metric": "loss", "mode": "min", "patience": 4, "min_delta": 0.0, "restore_best": True})

    if arg == "smoke":
        c.data.n_jets = 400
        c.data.workers = 1
        c.data.events_per_chunk = 100
        c.model.hidden = (32, 32)
        c.train.num_steps = 150
        c.train.batch_size = 64
        c.train.eval_batch_size = 256
        c.train.log_every = 25
        c.train.eval_every = 50
        c.train.checkpoint_every = 50
        c.optimizer.schedule.warmup_steps = 10
    elif arg:
        raise ValueError(f"top_tagging_mlp: unknown variant {arg!r}; use '' or 'smoke'")
    return c
