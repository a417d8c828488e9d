"""Boosted hadronic W -> q q' jets: a second anomaly signal beside top jets, with the kinematics
and the pipeline of the generated top-tagging sample (``hepjax.data.generation``).

Pythia 8 at 14 TeV, ``WeakDoubleBoson:ffbar2WW`` with both W bosons forced to quarks
(``24:onMode = off``, ``24:onIfAny = 1 2 3 4 5``) and the top-tagging sample's hard-process
window p̂T in [500, 700] GeV; no multi-parton interactions, ISR, FSR and hadronisation on, the
Delphes-ATLAS-like energy flow of ``hepjax.data.detector``; the leading anti-kT R = 0.8 jet of
each event, kept if 550 < pT < 650 GeV and |eta| < 2 and if a hadronically decaying W (its last
copy before decay) and both of its decay quarks lie within dR < 0.8 of the jet axis
(``Process(truth="w")``). Two-prong jets of mass ~80 GeV, lighter than the three-prong top jets:
the W of the anomaly-detection comparisons of Finke et al., "Autoencoders for unsupervised
anomaly detection in high energy physics", JHEP 06 (2021) 161, and of the LHC Olympics 2020
review (Kasieczka et al., Rep. Prog. Phys. 84 (2021) 124201).

``load_w_jets(n_jets, seed)`` generates the sample once (chunk-seeded like every generated
sample here: identical for any number of workers, a killed run resumes from the kept chunks)
and caches it as a native HDF5 file beside the top-tagging sample (``$HEPJAX_CACHE`` or
``~/.cache/hepjax``), named by every setting that changes its content.
"""
from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np

from hepjax.data import formats
from hepjax.data import generation
from hepjax.data import top_tagging

__all__ = ["W_SETTINGS", "W_TASK", "cache_path", "load_w_jets"]

W_SETTINGS = ("WeakDoubleBoson:ffbar2WW = on", "24:onMode = off", "24:onIfAny = 1 2 3 4 5",
              "PhaseSpace:pTHatMin = 500.", "PhaseSpace:pTHatMax = 700.")

# label 1: the anomaly; same cuts and MPI setting as TASKS["top-tagging"]
W_TASK = generation.Task("w-jets", (generation.Process("ww", W_SETTINGS, label=1, truth="w"),),
                         generation.TASKS["top-tagging"].cuts, mpi=False)


def cache_path(n_jets: int, seed: int, detector: str = "fast", events_per_chunk: int = 200,
               cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    root = pathlib.Path(cache_dir) if cache_dir else top_tagging.cache_dir()
    return root / (f"w-jets_n{int(n_jets)}_seed{int(seed)}_{detector}_epc{int(events_per_chunk)}_"
                   f"recipe{generation.RECIPE_VERSION}_pythia{generation.pythia_version()}.h5")


def load_w_jets(n_jets: int, seed: int, *, detector: str = "fast", events_per_chunk: int = 200,
                workers: int = 1, max_particles: int = 200,
                cache_dir: str | os.PathLike | None = None, progress=None) -> dict:
    """``n_jets`` truth-matched W jets: ``p4`` (N, P, 4), ``mask`` (N, P), ``label`` (N,) = 1,
    ``jet_p4`` and ``truth`` (the W four-momentum), P = ``max_particles``. Generated on first
    use and cached (a lock file lets parallel callers wait for one generation)."""
    if int(n_jets) < 1:
        raise ValueError(f"n_jets={n_jets}: need at least one W jet")
    path = cache_path(n_jets, seed, detector, events_per_chunk, cache_dir)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with top_tagging._exclusive(path.with_name(path.name + ".lock")):
            if not path.is_file():
                chunks = path.with_name(path.stem + ".chunks")
                jets = generation.generate(W_TASK, int(n_jets), int(seed), detector=detector,
                                           workers=workers, events_per_chunk=events_per_chunk,
                                           chunk_dir=chunks, progress=progress)
                meta = {"task": "w-jets", "n_jets": int(n_jets), "seed": int(seed),
                        "detector": detector, "mpi": False,
                        "events_per_chunk": int(events_per_chunk),
                        "settings": list(W_SETTINGS)}
                partial = path.with_suffix(f".partial-{os.getpid()}")
                formats.write_native(partial, jets, meta)
                os.replace(partial, path)
                shutil.rmtree(chunks, ignore_errors=True)
    jets = formats.read_native(path, max_particles)
    jets.pop("meta", None)
    if not np.all(jets["label"] == 1):
        raise ValueError(f"{path}: 'label' should be 1 (W) for every jet")
    return jets
