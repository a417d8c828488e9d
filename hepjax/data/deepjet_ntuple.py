"""Reader for the DeepJet ntuple layout (CMS DeepNtuplizer / DeepJetCore), through uproot + awkward.

The layout (DL4Jets/DeepJetCore's test ntuple ``ntuple_ttbar.root`` and the DeepNtuplizer output):
one TTree, ``deepntuplizer/tree`` by default, one row per jet, with

* jagged charged particle-flow candidates ``Cpfcan_*`` (pT, eta/phi relative to the jet axis,
  PUPPI weight, transverse/longitudinal impact parameters ``dxy``/``dz``, primary-vertex
  association, track covariance terms, lepton flags, track chi2 and quality),
* jagged neutral candidates ``Npfcan_*`` (pT, relative eta/phi, photon flag, hadronic fraction),
* jagged secondary vertices ``sv_*`` (pT, mass, tracks, fit chi2/ndf, flight distances with
  errors, pointing angle),
* per-jet globals (``jet_pt``, ``jet_eta`` — |eta| in this file —, ``npv``, quark/gluon
  variables ``QG_axis2``, ``QG_mult``, CMS's quark-gluon likelihood ``jet_qgl``),
* generator-level ``gen_pt`` (and ``gen_pt_WithNu`` with neutrinos added) for regression,
* one-hot flavour flags ``isB``, ``isC``, ``isUDS``, ``isG`` (and, in the full DeepNtuplizer
  output, ``isBB``, ``isGBB``, ``isLeptonicB``, ``isLeptonicB_C``, ``isCC``, ``isGCC``).

Inputs follow DeepJet (E. Bols, J. Kieseler, M. Verzetti, M. Stoye, A. Stakia, "Jet flavour
classification using DeepJet", JINST 15 (2020) P12012: 16 features x 25 charged, 6 x 25 neutral,
12 x 4 SVs, 15 globals) as far as this file's branches allow; the column lists are
``CPF_FEATURES``, ``NPF_FEATURES``, ``SV_FEATURES``, ``GLOBAL_FEATURES`` (16, 6, 12, 12 columns).
Missing with respect to the paper: impact-parameter *significances* (the file has no IP errors),
the track-to-jet distance and decay length, the candidate-to-SV distance, the jet-level b-tagging
variables (``TagVarCSV_*``). Features are physical values (no normalisation; see
``standardise``). ``jet_qgl`` and ``QG_ptD`` are identical in this file, so neither is an input;
``gen_*`` and ``Delta_gen_*`` are truth and never inputs.

Zero padding as DeepJetCore's ``MeanNormZeroPadParticles`` does: the first ``n_cpf`` (25),
``n_npf`` (25), ``n_sv`` (4) objects of each jet in the chosen order are kept, the rest dropped,
shorter lists padded with zeros (and a False mask). ``order="stored"`` keeps the ntuple's order
(what DeepJetCore does; in this file the candidates are in no pT order); ``order="physics"``
sorts first as CMS's DeepFlavour producer does, with the proxies this file allows: charged by
decreasing |dxy| (the producer uses the 2D impact-parameter significance, which needs errors the
file lacks), neutral by decreasing pT, SVs by decreasing 2D flight-distance significance
``sv_dxy / sv_dxyerr`` (as the producer).

Labels: b = isB | isBB | isGBB | isLeptonicB | isLeptonicB_C, c = isC | isCC | isGCC,
uds = isUDS, g = isG (class indices 0, 1, 2, 3; the flags that exist are used). Jets with no
flag set are *excluded* and counted (``info["n_unlabelled"]``, rows in ``info["unlabelled_rows"]``);
a jet with flags of two classes is a format error. ``jet_qgl = -1`` (the likelihood was not
computed) is not a value: ``qgl_valid`` is False there and ``jet_qgl`` is NaN.

Bad input raises one-line errors: ``FileNotFoundError`` for a missing file, ``FormatError`` (a
``ValueError``) for a file that is not ROOT, a file without the tree, a tree lacking a branch
(named), an empty tree, NaN/Inf in a branch, ``jet_pt <= 0``, conflicting labels.
"""
from __future__ import annotations

import pathlib

import numpy as np

from hepjax.data.formats import FormatError, _Checks, _no_jets, _short

__all__ = ["TREE", "CLASS_NAMES", "CPF_FEATURES", "NPF_FEATURES", "SV_FEATURES",
           "GLOBAL_FEATURES", "LABEL_FLAGS", "read_deepjet_ntuple", "required_branches",
           "standardise", "FormatError"]

TREE = "deepntuplizer/tree"
CLASS_NAMES = ("b", "c", "uds", "g")
LABEL_FLAGS = {"b": ("isB", "isBB", "isGBB", "isLeptonicB", "isLeptonicB_C"),
               "c": ("isC", "isCC", "isGCC"), "uds": ("isUDS",), "g": ("isG",)}
_REQUIRED_FLAGS = ("isB", "isC", "isUDS", "isG")

CPF_BRANCHES = ("pt", "etarel", "phirel", "puppiw", "dxy", "dz", "VTX_ass", "dptdpt",
                "detadeta", "dphidphi", "isMu", "isEl", "chi2", "highPurity")
NPF_BRANCHES = ("pt", "etarel", "phirel", "isGamma", "HadFrac")
SV_BRANCHES = ("pt", "mass", "ntracks", "chi2", "ndf", "dxy", "dxyerr", "d3d", "d3derr",
               "costhetasvpv")
JET_BRANCHES = ("jet_pt", "jet_eta", "npv", "QG_axis2", "QG_mult", "jet_qgl", "gen_pt",
                "event_no", "jet_no")

CPF_FEATURES = ("log_pt", "pt_over_jet", "etarel", "phirel", "deltaR", "puppiw", "dxy", "dz",
                "VTX_ass", "dptdpt", "detadeta", "dphidphi", "isMu", "isEl", "chi2",
                "highPurity")
NPF_FEATURES = ("pt_over_jet", "etarel", "phirel", "deltaR", "isGamma", "HadFrac")
SV_FEATURES = ("log_pt", "pt_over_jet", "mass", "ntracks", "chi2", "ndf", "normchi2", "dxy",
               "dxysig", "d3d", "d3dsig", "costhetasvpv")
GLOBAL_FEATURES = ("log_jet_pt", "jet_eta", "npv", "n_cpf", "n_npf", "n_sv", "QG_axis2",
                   "QG_mult", "ptD_cands", "cpf_pt_frac", "npf_pt_frac", "gamma_pt_frac")


def required_branches() -> list[str]:
    """The branches the reader needs (besides the optional extra label flags and gen_pt_WithNu)."""
    return (list(JET_BRANCHES) + list(_REQUIRED_FLAGS) + [f"Cpfcan_{b}" for b in CPF_BRANCHES]
            + [f"Npfcan_{b}" for b in NPF_BRANCHES] + [f"sv_{b}" for b in SV_BRANCHES])


def _imports():
    try:
        import awkward as ak
        import uproot
    except ImportError as err:
        raise ImportError(f"ROOT files need uproot and awkward ({err}); install them with "
                          "`pip install 'hepjax[io]'`") from None
    return ak, uproot


def _safe_div(a, b):
    b = np.asarray(b, np.float64)
    return np.where(b != 0, np.asarray(a, np.float64) / np.where(b != 0, b, 1.0), 0.0)


def _open_tree(path: pathlib.Path, tree: str):
    ak, uproot = _imports()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a DeepJet ntuple ROOT file "
                                f"with tree {tree!r})")
    try:
        f = uproot.open(path)
    except (OSError, ValueError) as err:
        raise FormatError(f"{path}: not a readable ROOT file ({_short(err)})") from None
    try:
        t = f[tree]
    except (KeyError, uproot.KeyInFileError):
        keys = [k.split(";")[0] for k in f.keys()]
        f.close()
        raise FormatError(f"{path}: no tree {tree!r} (the DeepJet ntuple layout); it has "
                          f"{keys[:8]}{' ...' if len(keys) > 8 else ''}") from None
    if not hasattr(t, "arrays"):
        f.close()
        raise FormatError(f"{path}: {tree!r} is a {type(t).__name__}, not a TTree")
    return f, t


def read_deepjet_ntuple(path, *, tree: str = TREE, n_cpf: int = 25, n_npf: int = 25,
                        n_sv: int = 4, order: str = "stored", gen: str = "gen_pt",
                        entry_stop: int | None = None) -> dict:
    """Reads a DeepJet ntuple; returns a dict of numpy arrays over the *labelled* jets (N):

    ``cpf`` (N, n_cpf, 16), ``npf`` (N, n_npf, 6), ``sv`` (N, n_sv, 12), ``globals`` (N, 12)
    float32 with ``cpf_mask``, ``npf_mask``, ``sv_mask`` (bool; padding False and zero);
    ``label`` (N,) int64 in 0..3 (``CLASS_NAMES`` b, c, uds, g); ``jet_pt``, ``jet_eta``,
    ``gen_pt`` (the branch ``gen``) float32 GeV; ``gen_valid`` (gen_pt > 0: DeepJetCore treats
    gen_pt <= 0 as unmatched pile-up jets); ``jet_qgl`` float32 (NaN where the file holds the
    -1 sentinel) and ``qgl_valid``; ``event_no``, ``jet_no``, ``row`` (the jet's row in the
    file) int64; ``info``: names of the columns, jets read, unlabelled jets excluded (count and
    rows), candidates dropped by the truncation, the order used."""
    if order not in ("stored", "physics"):
        raise ValueError(f"order={order!r}; valid: 'stored' (DeepJetCore), 'physics'")
    ak, uproot = _imports()
    path = pathlib.Path(path)
    f, t = _open_tree(path, tree)
    with f:
        names = set(t.keys())
        needed = required_branches()
        if gen != "gen_pt":
            needed = [gen if b == "gen_pt" else b for b in needed]
        missing = [b for b in needed if b not in names]
        if missing:
            plural = "es" if len(missing) > 1 else ""
            raise FormatError(f"{path}: tree {tree!r} lacks branch{plural} "
                              f"{missing[:6]}{' ...' if len(missing) > 6 else ''} "
                              f"({len(missing)} missing of the {len(needed)} the DeepJet "
                              "reader needs)")
        flags = [b for c in CLASS_NAMES for b in LABEL_FLAGS[c] if b in names]
        if t.num_entries == 0:
            raise _no_jets(path, f"in tree {tree!r}")
        try:
            a = t.arrays(sorted(set(needed) | set(flags)), entry_stop=entry_stop)
        except (OSError, ValueError, uproot.DeserializationError) as err:
            raise FormatError(f"{path}: cannot read tree {tree!r} ({_short(err)})") from None
    n_read = len(a)
    if n_read == 0:
        raise _no_jets(path, f"in tree {tree!r}")
    checks = _Checks(path)

    def scalar(name, dtype=np.float64):
        return ak.to_numpy(a[name]).astype(dtype)

    jet_pt = scalar("jet_pt")
    for b in ("jet_pt", "jet_eta", "npv", "QG_axis2", "QG_mult", "jet_qgl", gen):
        checks.finite(f"branch {b!r}", scalar(b))
    checks.custom("jet_pt > 0", np.isfinite(jet_pt) & (jet_pt <= 0), 0,
                  lambda i: f"jet_pt={jet_pt[i]!r}",
                  lambda k, total: f"branch 'jet_pt' is <= 0 in {k} of {total} rows")
    for prefix, branches in (("Cpfcan", CPF_BRANCHES), ("Npfcan", NPF_BRANCHES),
                             ("sv", SV_BRANCHES)):
        for b in branches:
            name = f"{prefix}_{b}"
            flat = ak.to_numpy(ak.flatten(a[name])).astype(np.float64)
            bad_flat = ~np.isfinite(flat)
            if bad_flat.any():  # rows with a NaN/Inf entry
                row_of = np.repeat(np.arange(n_read), ak.to_numpy(ak.num(a[name])))
                bad = np.zeros(n_read, bool)
                bad[row_of[bad_flat]] = True
                checks.custom(f"{name} finite", bad, 0, lambda i, n=name: f"{n} has NaN/Inf",
                              lambda k, total, n=name: f"branch {n!r} has NaN/Inf values in "
                                                       f"{k} of {total} rows")

    # labels: flags -> class index; unlabelled rows excluded, conflicting rows an error
    hot = np.stack([np.any([scalar(b, np.int64) != 0 for b in LABEL_FLAGS[c] if b in flags], 0)
                    for c in CLASS_NAMES], 1)
    n_hot = hot.sum(1)
    checks.custom("labels", n_hot > 1, 0,
                  lambda i: ", ".join(c for c, h in zip(CLASS_NAMES, hot[i]) if h),
                  lambda k, total: f"flavour flags of two classes set in {k} of {total} rows")
    checks.raise_first()
    labelled = n_hot == 1
    rows = np.flatnonzero(labelled)
    if len(rows) == 0:
        raise FormatError(f"{path}: none of the {n_read} jets in tree {tree!r} has a flavour "
                          f"flag set ({flags})")
    a = a[labelled]
    label = hot[labelled].argmax(1).astype(np.int64)
    jet_pt = jet_pt[labelled]

    def jag(prefix, b):
        return a[f"{prefix}_{b}"]

    # ordering, then truncation + zero padding
    sort_keys = {"Cpfcan": -abs(jag("Cpfcan", "dxy")), "Npfcan": -jag("Npfcan", "pt"),
                 "sv": -_ak_safe_div(ak, jag("sv", "dxy"), jag("sv", "dxyerr"))}
    counts, dropped, blocks, masks = {}, {}, {}, {}
    for prefix, branches, n_max in (("Cpfcan", CPF_BRANCHES, n_cpf),
                                    ("Npfcan", NPF_BRANCHES, n_npf), ("sv", SV_BRANCHES, n_sv)):
        num = ak.to_numpy(ak.num(jag(prefix, branches[0]))).astype(np.int64)
        counts[prefix] = num
        dropped[prefix] = int(np.maximum(num - n_max, 0).sum())
        idx = ak.argsort(sort_keys[prefix], axis=1, stable=True) if order == "physics" else None
        cols = {}
        for b in branches:
            x = jag(prefix, b)
            x = x[idx] if idx is not None else x
            cols[b] = ak.to_numpy(ak.fill_none(ak.pad_none(x, n_max, clip=True), 0)).astype(
                np.float64)
        blocks[prefix] = cols
        masks[prefix] = np.arange(n_max)[None] < np.minimum(num, n_max)[:, None]

    jp = jet_pt[:, None]
    c = blocks["Cpfcan"]
    cm = masks["Cpfcan"]
    cpf = np.stack([np.where(cm, np.log(np.where(cm, c["pt"], 1.0)), 0.0), c["pt"] / jp,
                    c["etarel"], c["phirel"], np.hypot(c["etarel"], c["phirel"]), c["puppiw"],
                    c["dxy"], c["dz"], c["VTX_ass"], c["dptdpt"], c["detadeta"], c["dphidphi"],
                    c["isMu"], c["isEl"], c["chi2"], c["highPurity"]], -1)
    nb = blocks["Npfcan"]
    npf = np.stack([nb["pt"] / jp, nb["etarel"], nb["phirel"], np.hypot(nb["etarel"], nb["phirel"]),
                    nb["isGamma"], nb["HadFrac"]], -1)
    s = blocks["sv"]
    sm = masks["sv"]
    sv = np.stack([np.where(sm, np.log(np.where(sm, s["pt"], 1.0)), 0.0), s["pt"] / jp,
                   s["mass"], s["ntracks"], s["chi2"], s["ndf"], _safe_div(s["chi2"], s["ndf"]),
                   s["dxy"], _safe_div(s["dxy"], s["dxyerr"]), s["d3d"],
                   _safe_div(s["d3d"], s["d3derr"]), s["costhetasvpv"]], -1)
    for block, mask in ((cpf, cm), (npf, masks["Npfcan"]), (sv, sm)):
        block[~mask] = 0.0

    # globals: jet-level branches plus sums over *all* the jet's candidates (not truncated)
    cpt, npt = jag("Cpfcan", "pt"), jag("Npfcan", "pt")
    sum_c, sum_n = ak.to_numpy(ak.sum(cpt, axis=1)), ak.to_numpy(ak.sum(npt, axis=1))
    sum2 = ak.to_numpy(ak.sum(cpt ** 2, axis=1)) + ak.to_numpy(ak.sum(npt ** 2, axis=1))
    gamma = ak.to_numpy(ak.sum(npt * (jag("Npfcan", "isGamma") != 0), axis=1))
    glob = np.stack([np.log(jet_pt), scalar("jet_eta"), scalar("npv"), counts["Cpfcan"],
                     counts["Npfcan"], counts["sv"], scalar("QG_axis2"), scalar("QG_mult"),
                     _safe_div(np.sqrt(sum2), sum_c + sum_n), sum_c / jet_pt, sum_n / jet_pt,
                     gamma / jet_pt], -1)

    qgl = scalar("jet_qgl")
    qgl_valid = qgl >= 0  # -1: not computed
    gen_pt = scalar(gen)
    unlabelled = np.flatnonzero(~labelled)
    info = {"tree": tree, "order": order, "n_read": n_read, "n_jets": len(rows),
            "n_unlabelled": int(len(unlabelled)), "unlabelled_rows": unlabelled.tolist(),
            "label_flags": flags, "class_names": CLASS_NAMES,
            "class_counts": np.bincount(label, minlength=4).tolist(),
            "n_qgl_missing": int((~qgl_valid).sum()), "gen_branch": gen,
            "dropped": {"cpf": dropped["Cpfcan"], "npf": dropped["Npfcan"], "sv": dropped["sv"]},
            "max_counts": {"cpf": int(counts["Cpfcan"].max()), "npf": int(counts["Npfcan"].max()),
                           "sv": int(counts["sv"].max())},
            "cpf_names": CPF_FEATURES, "npf_names": NPF_FEATURES, "sv_names": SV_FEATURES,
            "global_names": GLOBAL_FEATURES}
    return {"cpf": cpf.astype(np.float32), "cpf_mask": cm,
            "npf": npf.astype(np.float32), "npf_mask": masks["Npfcan"],
            "sv": sv.astype(np.float32), "sv_mask": sm, "globals": glob.astype(np.float32),
            "label": label, "jet_pt": jet_pt.astype(np.float32),
            "jet_eta": scalar("jet_eta").astype(np.float32), "gen_pt": gen_pt.astype(np.float32),
            "gen_valid": gen_pt > 0, "jet_qgl": np.where(qgl_valid, qgl, np.nan).astype(np.float32),
            "qgl_valid": qgl_valid, "event_no": scalar("event_no", np.int64),
            "jet_no": scalar("jet_no", np.int64), "row": rows.astype(np.int64), "info": info}


def _ak_safe_div(ak, a, b):
    return ak.where(b != 0, a / ak.where(b != 0, b, 1.0), 0.0)


# per-feature transform before standardisation: heavy-tailed columns are squashed with
# asinh(x / scale) (linear below the scale, logarithmic above)
_ASINH_SCALES = {"cpf": {"dxy": 0.01, "dz": 0.01, "dptdpt": 1e-4, "detadeta": 1e-6,
                         "dphidphi": 1e-6, "chi2": 1.0},
                 "sv": {"chi2": 1.0, "normchi2": 1.0, "dxy": 0.1, "dxysig": 1.0, "d3d": 0.1,
                        "d3dsig": 1.0}}


def standardise(data: dict, stats: dict | None = None) -> tuple[dict, dict]:
    """Network inputs from ``read_deepjet_ntuple``'s arrays: heavy-tailed columns through
    asinh(x / scale), then (x - mean) / std with the mean and std of the real (unpadded) entries
    of the jets given (pass the training split's ``stats`` to the others); padded entries stay
    0. Returns (dict with cpf, npf, sv, globals replaced, stats)."""
    out = dict(data)
    new_stats = {} if stats is None else stats
    for key, names in (("cpf", CPF_FEATURES), ("npf", NPF_FEATURES), ("sv", SV_FEATURES),
                       ("globals", GLOBAL_FEATURES)):
        x = np.asarray(data[key], np.float64).copy()
        for col, scale in _ASINH_SCALES.get(key, {}).items():
            j = names.index(col)
            x[..., j] = np.arcsinh(x[..., j] / scale)
        mask = data[f"{key}_mask"] if key != "globals" else np.ones(len(x), bool)
        if stats is None:
            real = x[mask]
            mean = real.mean(0) if len(real) else np.zeros(x.shape[-1])
            std = real.std(0) if len(real) else np.ones(x.shape[-1])
            new_stats[key] = (mean, np.where(std > 1e-8, std, 1.0))
        mean, std = new_stats[key]
        x = (x - mean) / std
        x[~mask] = 0.0
        out[key] = x.astype(np.float32)
    return out, new_stats
