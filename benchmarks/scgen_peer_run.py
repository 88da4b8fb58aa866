"""One seed of the published scGen (PyTorch, scvi-tools), run by the peer's interpreter.

Called by `peer_scgen.py`, never imported by perturbjax: it needs the `scgen` package and its
pinned dependencies (`benchmarks/requirements-peer-scgen.txt`), which conflict with ours.
Writes the prediction (`<out>.npy`) and timings (`<out>.json`).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", required=True, help="h5ad: training pool (X log-normalised)")
    parser.add_argument("--held_out", required=True, help="cell type to predict")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--early_stopping", action="store_true",
                        help="the published default: patience 25 on scvi's elbo_validation")
    parser.add_argument("--out", required=True, help="output path without extension")
    args = parser.parse_args()

    import anndata as ad
    import scgen
    import scvi
    import torch

    torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    train = ad.read_h5ad(args.train)
    scgen.SCGEN.setup_anndata(train, batch_key="condition", labels_key="cell_type")
    model = scgen.SCGEN(train, n_hidden=800, n_latent=100, n_layers=2, dropout_rate=0.2)
    start = time.perf_counter()
    model.train(max_epochs=args.epochs, batch_size=32, early_stopping=args.early_stopping,
                early_stopping_patience=25, use_gpu=False)
    train_seconds = time.perf_counter() - start
    epochs_run = len(model.history["elbo_train"])
    prediction, _ = model.predict(ctrl_key="control", stim_key="stimulated",
                                  celltype_to_predict=args.held_out)
    np.save(args.out + ".npy", np.asarray(prediction.X, np.float32))
    with open(args.out + ".json", "w") as f:
        json.dump({"train_seconds": train_seconds, "epochs": args.epochs,
                   "epochs_run": epochs_run,
                   "n_train": int(train.n_obs), "torch": torch.__version__,
                   "scgen": scgen.__version__}, f)


if __name__ == "__main__":
    main()
