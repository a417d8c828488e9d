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

from hepjax.configs import defaults


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

    c.model = defaults.mlp((64, 64, 64))
    c.optimizer = defaults.adamw_warmup_cosine(2e-3)
    c.train = defaults.train(num_steps=2000, batch_size=128, eval_batch_size=1024, eval_every=200,
                              checkpoint_every=200)

    if arg == "smoke":
        c.data.n_jets = 400
        c.data.workers = 1
        c.data.events_per_chunk = 100
        c.model.hidden = (32, 32)
        c.train.update({"num_steps": 150, "batch_size": 64, "eval_batch_size": 256,
                        "log_every": 25, "eval_every": 50, "checkpoint_every": 50})
        c.optimizer.schedule.warmup_steps = 10
    elif arg:
        raise ValueError(f"top_tagging_mlp: unknown variant {arg!r}; use '' or 'smoke'")
    return c
