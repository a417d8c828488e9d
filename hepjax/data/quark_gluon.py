"""The quark/gluon dataset of the Energy Flow Networks paper, generated here and cached.

Komiske, Metodiev, Thaler, "Energy Flow Networks: Deep Sets for Particle Jets", JHEP 01 (2019)
121 (arXiv:1810.05165): Pythia 8 qqbar -> Z(->nu nu) + g (label 0) and qg -> Z(->nu nu) + q with
q = u, d, s (label 1; events whose hard-process quark is c or b are vetoed) at 14 TeV with
multi-parton interactions, the hardest anti-kT R = 0.4 jet with 500 < pT < 550 GeV and
|y| < 1.7, every final-state particle but neutrinos (no detector), as the energyflow package's
``qg_jets`` sample (``hepjax.data.generation.TASKS['quark-gluon']``, cached under the
quark/gluon recipe version ``generation.QUARK_GLUON_RECIPE_VERSION``).

``load_splits(cfg)`` (``cfg`` = ``config.data`` with ``name = 'quark_gluon'``, the fields of
``hepjax.configs.defaults.quark_gluon_data``) returns ``{"train", "val", "test"}`` dicts and
``feature_names``. Each split holds ``features`` (N, P, F) float32, ``mask`` (N, P) bool,
``vectors`` (N, P, 4) float32 (E, px, py, pz) GeV and ``label`` (N,) int64 (1 = quark).

Per-particle features, the paper's (section 4.1 and the energyflow PFN example): the pT
fraction z_i = pT_i / sum_j pT_j, and the rapidity and azimuth relative to the jet's
pT-weighted centroid (y_i - <y>, phi_i - <phi>, phi first wrapped to within pi of the jet
axis); with ``cfg.particle_id``:

* ``"none"``: (z, y, phi), the paper's PFN (the EFN reads only z and the angles, from
  ``vectors``);
* ``"id"``: plus the PDG id as one float with energyflow's ``remap_pids`` table (photon 0,
  pi+- 0.1/0.2, K+- 0.3/0.4, K_L 0.5, n/nbar 0.6/0.7, p/pbar 0.8/0.9, e-+ 1.0/1.1, mu-+ 1.2/1.3),
  the paper's PFN-ID;
* ``"onehot"``: plus eight one-hot flags of what a detector can tell apart (photon, charged
  hadron +/-, neutral hadron, e-/e+, mu-/mu+), the experimentally accessible information the
  paper's PFN-Ex uses (there as one float), here one-hot.

Sources: ``cfg.path`` an energyflow ``.npz`` (``X`` (N, M, 4) (pT, y, phi, pid), ``y``) split by
a permutation seeded with ``cfg.seed`` in ``cfg.ttv_fractions``, or a native file with a ``ttv``
column; with ``cfg.path`` empty the jets are generated (``generation.generate('quark-gluon',
cfg.n_jets, cfg.seed, detector=cfg.detector, mpi=cfg.mpi)``) once and cached as a native file
under ``cfg.cache_dir`` (default ``$HEPJAX_CACHE`` or ``~/.cache/hepjax``), named by every
setting that changes its content; a killed generation resumes from its finished chunks.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from hepjax.configs import defaults
from hepjax.data import formats
from hepjax.physics import numpy_kinematics as npkin

__all__ = ["PID_FLOAT", "ONEHOT_NAMES", "PID_MODES", "cache_path", "chunk_pool", "fill_chunk_pool",
           "generate_cached", "load_jets",
           "particle_features", "represent", "load_splits", "TTV_CODES"]

TTV_CODES = {"train": 0, "test": 1, "val": 2}

# energyflow.utils.data_utils.PID2FLOAT_MAP (Komiske, Metodiev, Thaler's PFN-ID encoding)
PID_FLOAT = {22: 0.0, 211: 0.1, -211: 0.2, 321: 0.3, -321: 0.4, 130: 0.5, 2112: 0.6, -2112: 0.7,
             2212: 0.8, -2212: 0.9, 11: 1.0, -11: 1.1, 13: 1.2, -13: 1.3}
ONEHOT_NAMES = ("is_photon", "is_charged_hadron_plus", "is_charged_hadron_minus",
                "is_neutral_hadron", "is_electron", "is_positron", "is_muon_minus", "is_muon_plus")
PID_MODES = ("none", "id", "onehot")
KINEMATIC_NAMES = ("z", "rapidity_rel", "phi_rel")


def _section(cfg):
    return defaults.overlay(defaults.quark_gluon_data(), cfg, "config.data")


def cache_dir(cfg=None) -> pathlib.Path:
    configured = _section(cfg).cache_dir if cfg is not None else ""
    return pathlib.Path(configured or os.environ.get("HEPJAX_CACHE", "")
                        or pathlib.Path.home() / ".cache" / "hepjax").expanduser()



def ttv_fractions(cfg) -> tuple[float, float, float]:
    fractions = tuple(float(f) for f in _section(cfg).ttv_fractions)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"config.data.ttv_fractions={fractions}: expected three positive "
                         "fractions (train, test, val) summing to 1")
    return fractions


def _stem(cfg) -> str:
    from hepjax.data import generation

    mpi = "_mpi" if cfg.mpi else "_nompi"
    return (f"seed{int(cfg.seed)}_{cfg.detector}{mpi}_epc{int(cfg.events_per_chunk)}_recipe"
            f"{generation.QUARK_GLUON_RECIPE_VERSION}_pythia{generation.pythia_version()}")


def cache_path(cfg) -> pathlib.Path:
    """Named by every setting that changes the content, the recipe and Pythia's version. The
    ttv fractions are not in the name: they only assign split codes (``load_jets``), so one
    sample serves every split choice."""
    cfg = _section(cfg)
    return cache_dir(cfg) / f"quark-gluon_n{int(cfg.n_jets)}_{_stem(cfg)}.h5"


def chunk_pool(cfg) -> pathlib.Path:
    """The directory of simulated chunks shared by every ``n_jets`` of one (seed, detector, mpi,
    events per chunk, recipe, Pythia): a chunk depends only on its seed
    (``generation.chunk_seed``), and ``generation.generate`` takes chunks 0, 1, 2, ... of each
    class in order, so a sample of any size reuses the chunks a smaller or interrupted one made.
    It is kept after the sample is written (about 4 kB per jet); delete it to reclaim the disk."""
    cfg = _section(cfg)
    return cache_dir(cfg) / f"quark-gluon_{_stem(cfg)}.chunks"


def _pool_jets(pool: pathlib.Path, process: int) -> int:
    """Jets in the contiguous chunks 0, 1, ... of ``process`` already in ``pool``."""
    total, chunk = 0, 0
    while True:
        path = pool / f"process{process}_chunk{chunk:07d}.npz"
        if not path.is_file():
            return total
        with np.load(path) as saved:
            total += len(saved["n_constituents"])
        chunk += 1


def _chunk_jets(path) -> int:
    with np.load(path) as saved:
        return len(saved["n_constituents"])


def fill_chunk_pool(cfg, seconds: float, max_jets: int, progress=None, workers: int = 1,
                    executor=None) -> int:
    """Simulates chunks into ``chunk_pool(cfg)`` for about ``seconds`` (chunks under way are
    finished, none is started after), always the class with fewer jets next (counting the chunks
    in flight at that class's mean jets per chunk), until both classes hold ``max_jets // 2``.
    Returns the largest even ``n_jets`` the pool now covers (2 x the smaller class's jets in its
    contiguous chunks 0, 1, ...): with that ``cfg.n_jets``, ``generate_cached`` only reads chunks
    back. ``workers`` > 1 simulates that many chunks at once in separate processes (or on
    ``executor``, a ``concurrent.futures`` executor); the lowest missing chunk index of a class
    is simulated next, so a pool left with gaps by a killed run is filled in first. The jets
    depend only on the seed (a chunk only on its index), never on ``workers`` or on when the
    filling stopped: a larger budget gives a superset of the jets, and pools can be filled in
    several sessions."""
    import concurrent.futures
    import multiprocessing
    import time

    from hepjax.data import generation

    cfg = _section(cfg)
    pool = chunk_pool(cfg)
    pool.mkdir(parents=True, exist_ok=True)
    task = generation._task("quark-gluon", bool(cfg.mpi))
    n_classes = len(task.processes)
    done = [dict() for _ in range(n_classes)]        # chunk index -> jets, per class
    for path in pool.glob("process*_chunk*.npz"):
        k, _, chunk = path.stem[len("process"):].partition("_chunk")
        if k.isdigit() and int(k) < n_classes and chunk.isdigit():
            done[int(k)][int(chunk)] = _chunk_jets(path)
    flight: dict = {}                                # future -> (class, chunk index)

    def have(k):
        mean = (sum(done[k].values()) / len(done[k])) if done[k] else 1.0
        return sum(done[k].values()) + mean * sum(1 for c, _ in flight.values() if c == k)

    def first_free(k):
        taken = {j for c, j in flight.values() if c == k}
        chunk = 0
        while chunk in done[k] or chunk in taken:
            chunk += 1
        return chunk

    def submit(run):
        # a gap a killed run left (a missing chunk below a finished one) first: only the
        # contiguous chunks 0, 1, ... make a sample
        gaps = [k for k in range(n_classes) if done[k] and first_free(k) < max(done[k])]
        k = gaps[0] if gaps else min(range(n_classes), key=have)
        if not gaps and have(k) >= max_jets // 2:
            return False
        chunk = first_free(k)
        args = (task, k, int(cfg.seed), chunk, str(cfg.detector),
                generation.detector_lib.DetectorConfig(), int(cfg.events_per_chunk))
        flight[run(generation._chunk_job, args, str(pool / f"process{k}_chunk{chunk:07d}.npz"))] = (k, chunk)
        return True

    def covered():   # _pool_jets from what is known, without reading the chunks again
        contiguous = []
        for chunks in done:
            total, chunk = 0, 0
            while chunk in chunks:
                total, chunk = total + chunks[chunk], chunk + 1
            contiguous.append(total)
        return 2 * min(min(contiguous), max_jets // 2)

    start = time.perf_counter()
    own = None
    if workers <= 1 and executor is None:
        class _Now:   # runs each chunk in this process, as a finished future
            def submit(self, fn, *args):
                future = concurrent.futures.Future()
                future.set_result(fn(*args))
                return future
        executor = _Now()
    elif executor is None:
        own = executor = concurrent.futures.ProcessPoolExecutor(
            int(workers), mp_context=multiprocessing.get_context("spawn"))
    try:
        while True:
            while (len(flight) < max(int(workers), 1)
                   and time.perf_counter() - start < seconds and submit(executor.submit)):
                pass
            if not flight:
                break
            finished, _ = concurrent.futures.wait(list(flight),
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                k, chunk = flight.pop(future)
                done[k][chunk] = len(future.result()["n_constituents"])
            if progress is not None:
                progress(2 * min(sum(d.values()) for d in done), time.perf_counter() - start)
    finally:
        for future in flight:
            future.cancel()
        if own is not None:
            own.shutdown(wait=True, cancel_futures=True)
    return covered()


def generate_cached(cfg, progress=None) -> pathlib.Path:
    """The cached native file for ``cfg``, generated first if absent (under a lock, so parallel
    processes asking for the same sample take turns). Chunks go to ``chunk_pool(cfg)`` as they
    finish, so a killed generation resumes and a larger sample reuses a smaller one's."""
    from hepjax.data import generation, top_tagging

    cfg = _section(cfg)
    path = cache_path(cfg)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with top_tagging._exclusive(path.with_name(path.name + ".lock")):
        if path.is_file():
            return path
        jets = generation.generate("quark-gluon", int(cfg.n_jets), int(cfg.seed),
                                   detector=str(cfg.detector), workers=int(cfg.workers),
                                   events_per_chunk=int(cfg.events_per_chunk), progress=progress,
                                   chunk_dir=chunk_pool(cfg), mpi=bool(cfg.mpi))
        jets.pop("ttv", None)   # splits are drawn in load_jets from cfg.ttv_fractions
        meta = {"task": "quark-gluon", "n_jets": int(cfg.n_jets), "seed": int(cfg.seed),
                "detector": str(cfg.detector), "mpi": bool(cfg.mpi),
                "events_per_chunk": int(cfg.events_per_chunk)}
        partial = path.with_suffix(f".partial-{os.getpid()}")
        formats.write_native(partial, jets, meta)
        os.replace(partial, path)
    return path


def _split_codes(n: int, seed: int, fractions) -> np.ndarray:
    """ttv codes (0 train, 1 test, 2 val) drawn from ``seed`` in ``fractions`` (train, test, val)."""
    fractions = np.asarray(fractions, np.float64)
    return np.random.default_rng([int(seed), 0x77]).choice(3, size=n, p=fractions / fractions.sum())


def _from_energyflow(path: pathlib.Path, max_particles: int) -> dict:
    """An energyflow quark/gluon .npz as native-like arrays (p4, pid, mask, label), the particles
    sorted by pT within each jet (the energyflow files are) and cut to ``max_particles``."""
    data = formats.read_energyflow_npz(path)
    X = data["X"]
    order = np.argsort(-X[..., 0], axis=1, kind="stable")
    X = np.take_along_axis(X, order[..., None], axis=1)[:, :max_particles]
    if X.shape[1] < max_particles:   # padded to max_particles, as read_native does
        X = np.concatenate([X, np.zeros((len(X), max_particles - X.shape[1], 4))], axis=1)
    real = X[..., 0] > 0
    p4 = formats.ptyphi_to_p4(X).astype(np.float32)
    pid = np.where(real, np.rint(X[..., 3]), 0).astype(np.int32)
    return {"p4": p4, "pid": pid, "mask": real, "label": np.asarray(data["y"]).astype(np.int64),
            "n_constituents": real.sum(1).astype(np.int32)}


def load_jets(cfg) -> dict[str, dict]:
    """{'train', 'val', 'test'} -> jet arrays (p4 (N, P, 4), pid (N, P), mask (N, P), label)."""
    cfg = _section(cfg)
    p = int(cfg.max_particles)
    if p < 1:
        raise ValueError(f"config.data.max_particles={p}: expected >= 1")
    source = pathlib.Path(str(cfg.path)) if str(cfg.path) else None
    if source is None:
        source = generate_cached(cfg)
        jets = formats.read_native(source, p)
    elif source.suffix == ".npz":
        jets = _from_energyflow(source, p)
    else:
        jets = formats.read_native(source, p)
    if "pid" not in jets:
        raise ValueError(f"{source}: no 'pid' dataset; the quark/gluon features need particle IDs")
    codes = jets.get("ttv")
    if codes is None:
        codes = _split_codes(len(jets["label"]), int(cfg.seed), ttv_fractions(cfg))
    out = {}
    for split, code in TTV_CODES.items():
        rows = codes == code
        if not rows.any():
            raise ValueError(f"{source}: no jets in the {split} split (ttv={code}); "
                             f"{len(codes)} jets in all")
        out[split] = {k: jets[k][rows] for k in ("p4", "pid", "mask", "label")}
    return out


def _pid_float(pid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    keys = np.array(sorted(PID_FLOAT))
    values = np.array([PID_FLOAT[k] for k in keys])
    pos = np.clip(np.searchsorted(keys, pid), 0, len(keys) - 1)
    known = keys[pos] == pid
    unknown = mask & ~known
    if unknown.any():
        raise ValueError(f"particle_id='id': PDG ids {sorted(set(pid[unknown].tolist()))[:8]} "
                         f"in {int(unknown.any(1).sum())} jets are not in energyflow's table "
                         f"{sorted(PID_FLOAT)}")
    return np.where(mask, values[pos], 0.0)


def _pid_onehot(pid: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    apid = np.abs(pid)
    lepton = (apid == 11) | (apid == 13)
    charged_hadron = np.isin(apid, (211, 321, 2212))
    neutral_hadron = np.isin(apid, (130, 2112))
    known = (apid == 22) | lepton | charged_hadron | neutral_hadron
    unknown = mask & ~known
    if unknown.any():
        raise ValueError(f"particle_id='onehot': PDG ids {sorted(set(pid[unknown].tolist()))[:8]} "
                         "are neither photons, e, mu, charged (pi, K, p) nor neutral (K_L, n) hadrons")
    # the sign of the charge: pi+ (211), K+ (321), p (2212) positive; e- (11), mu- (13) negative
    positive = pid > 0
    return [apid == 22, charged_hadron & positive, charged_hadron & ~positive, neutral_hadron,
            pid == 11, pid == -11, pid == 13, pid == -13]


def particle_features(p4, mask, pid=None, mode: str = "none") -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, P, F) float32: z, y - <y>, phi - <phi> (module docstring), plus the ``mode``'s PID
    columns; 0 at masked particles. <.> is the z-weighted mean over the jet's particles; phi is
    first taken relative to the jet axis (the constituents' summed momentum) and wrapped."""
    if mode not in PID_MODES:
        raise ValueError(f"config.data.particle_id={mode!r}: use one of {PID_MODES}")
    p4 = np.asarray(p4, np.float64)
    mask = np.asarray(mask, bool)
    pt = np.where(mask, npkin.pt(p4), 0.0)
    z = npkin.divide_or_zero(pt, pt.sum(1, keepdims=True))
    safe = np.where(mask[..., None], p4, np.array([1.0, 1.0, 0.0, 0.0]))   # y, phi defined
    y = npkin.rapidity(safe)
    axis = npkin.jet_momentum(np.where(mask[..., None], p4, 0.0))
    dphi = npkin.delta_phi(npkin.phi(safe), npkin.phi(axis)[:, None])
    y_rel = y - (z * y).sum(1, keepdims=True)
    phi_rel = dphi - (z * dphi).sum(1, keepdims=True)
    cols, names = [z, y_rel, phi_rel], KINEMATIC_NAMES
    if mode != "none":
        if pid is None:
            raise ValueError(f"particle_id={mode!r} needs the particles' PDG ids ('pid')")
        pid = np.asarray(pid, np.int64)
        if mode == "id":
            cols, names = cols + [_pid_float(pid, mask)], names + ("pid_float",)
        else:
            cols, names = cols + _pid_onehot(pid, mask), names + ONEHOT_NAMES
    out = np.stack([np.asarray(c, np.float64) for c in cols], -1)
    return np.where(mask[..., None], out, 0.0).astype(np.float32), names


def represent(jets: dict, cfg) -> tuple[dict, tuple[str, ...]]:
    """Model inputs of one split: features, mask, vectors (E, px, py, pz), label."""
    cfg = _section(cfg)
    mask = np.asarray(jets["mask"], bool)
    features, names = particle_features(jets["p4"], mask, jets.get("pid"), str(cfg.particle_id))
    vectors = np.where(mask[..., None], jets["p4"], 0).astype(np.float32)
    return {"features": features, "mask": mask, "vectors": vectors,
            "label": np.asarray(jets["label"], np.int64)}, names


def load_splits(cfg, splits=("train", "val", "test")) -> dict:
    """The ``splits`` as model inputs plus ``feature_names``. ``cfg.train_fraction`` (nested,
    seeded with ``cfg.seed``) and ``cfg.max_train_jets`` / ``cfg.max_val_jets`` (0: all) keep
    part of the training / validation jets, as ``hepjax.data.top_tagging.load_splits``; the
    test split is always whole."""
    from hepjax.data.top_tagging import subset_splits

    unknown = [s for s in splits if s not in TTV_CODES]
    if unknown or not splits:
        raise ValueError(f"load_splits: splits {tuple(splits)}; choose from {tuple(TTV_CODES)}")
    cfg = _section(cfg)
    jets = load_jets(cfg)
    jets = subset_splits(jets, cfg)
    out, names = {}, ()
    for split in splits:
        out[split], names = represent(jets[split], cfg)
    out["feature_names"] = names
    return out
