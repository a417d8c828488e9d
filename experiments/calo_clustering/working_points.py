"""Other network working points on the test and two-particle events of a finished run, from the
network outputs cached by ``run.py`` (``predictions_*.npz``): the efficiency and fake rate at
thresholds given on the command line (t_beta,t_d,t_d_hadron[,reach]; t_d_hadron 'none' for one
radius; reach, the nearest rule's collection radius in units of t_d, 1 when omitted),
beside the working point ``run.py`` chose on the validation events. For comparisons at another
operating point (e.g. the network at CLUE's validation fake rate); choose the thresholds from
the validation trials in ``results.json`` (``network.tuning``), never from the test events.

    python -m experiments.calo_clustering.working_points --workdir runs/calo_cpu 0.3,0.6,0.8
"""
from __future__ import annotations

import argparse
import json
import pathlib

from experiments.calo_clustering import run
from experiments.calo_clustering.config import get


def _point(text: str):
    parts = text.split(",")
    if len(parts) not in (3, 4):
        raise ValueError(f"working point {text!r}: expected t_beta,t_d,t_d_hadron[,reach]")
    tdh = None if parts[2].lower() == "none" else float(parts[2])
    reach = float(parts[3]) if len(parts) == 4 else 1.0
    return float(parts[0]), float(parts[1]), tdh, reach


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("points", nargs="+", type=_point, help="t_beta,t_d,t_d_hadron[,reach]")
    args = ap.parse_args(argv)
    wd = pathlib.Path(args.workdir)
    results = json.loads((wd / "results.json").read_text())
    v = get(results["variant"])
    files = run.ensure_events(v, wd / "data", results["seed"])     # the run's cached events
    out = []
    loaded, preds = {}, {}
    for s in ("test", "pairs"):
        loaded[s] = run.load(files[s])
        preds[s] = run.cached_outputs(wd, s, len(loaded[s][0]["mask"]))
        if preds[s] is None:
            raise FileNotFoundError(f"{wd / f'predictions_{s}.npz'}: no network outputs of the "
                                    f"current model.pkl; run run.py on this work directory first")
    (td_data, td_pad), (pr_data, pr_pad) = loaded["test"], loaded["pairs"]
    for tb, td, tdh, reach in args.points:
        em_radius = results["network"].get("em_radius_cm")        # the run's energy radius
        nl, ne, nt, _ = run.network_objects(preds["test"], td_data, tb, td, v.max_objects,
                                            v.assign, tdh, reach, em_radius)
        pl, pe, _, _ = run.network_objects(preds["pairs"], pr_data, tb, td, v.max_objects,
                                           v.assign, tdh, reach, em_radius)
        scales = results["network"].get("energy_scales", (1.0, 1.0))
        res, _ = run.evaluate_algorithm("network", td_pad, pr_pad, nl,
                                        run.scale_by_type(ne, nt, scales), pl, pe, v,
                                        types_test=nt)
        row = {"t_beta": tb, "t_d": td, "t_d_hadron": tdh, "reach": reach,
               "summary": res["summary"],
               "pairs_closer_than_2RM": res["pairs_closer_than_2RM"], "pairs": res["pairs"]}
        out.append(row)
        s = res["summary"]
        pc = res["pairs_closer_than_2RM"]
        print(f"t_beta={tb} t_d={td} t_d_hadron={tdh} reach={reach}: efficiency "
              f"{run._fmt(s['efficiency'])}, close {run._fmt(s['efficiency_close'])}; fake rate "
              f"{run._fmt(s['fake_rate'])}, close {run._fmt(s['fake_rate_close'])}; two-particle "
              f"events < 2 R_M: efficiency {run._fmt(pc['efficiency'])}, fake rate "
              f"{run._fmt(pc['fake_rate'])}")
    (wd / "working_points.json").write_text(json.dumps(out, indent=1, default=float))
    return out


if __name__ == "__main__":
    main()
