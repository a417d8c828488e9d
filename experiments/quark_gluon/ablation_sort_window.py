"""Our PFN-ID on the 10 % training subset of the 165,148-jet sample with length-sorted batches off
(``nosort``; the curve point of run.py had a window of 8), for the energyflow comparison:

    HEPJAX_CACHE=runs/qg_cache PYTHONPATH=. python experiments/quark_gluon/ablation_sort_window.py nosort
"""
import json, os, pathlib, sys, time
os.environ.setdefault("HEPJAX_CACHE", "runs/qg_cache")

def main():
    from experiments.quark_gluon import run
    from hepjax.train import experiment
    tag = sys.argv[1]
    config = run.model_config("pfn_id", "cpu")
    config.seed = 0
    config.data.n_jets = 165148
    config.data.train_fraction = 0.1
    config.train.num_epochs = 50
    config.train.early_stopping.patience = 8
    config.train.batch_size = 32
    if tag == "nosort":
        config.train.length_sort_window = 0
    elif tag == "nobuckets":
        config.train.length_sort_window = 0
        config.train.length_buckets = ()
    workdir = pathlib.Path(f"runs/quark_gluon/ablation_{tag}")
    start = time.perf_counter()
    experiment.train(config, workdir)
    row = run.summarise("pfn_id", workdir, 0.1, time.perf_counter() - start)
    print(json.dumps(row))

if __name__ == "__main__":
    main()
