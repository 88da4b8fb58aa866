"""CellFlow (theislab, `cellflow-tools`) on one training pool: the peer side of
`benchmarks/peer_cellflow.py`, run in CellFlow's own environment (its pins, scikit-learn 1.5.1
and scipy < 1.16, conflict with ours; `benchmarks/requirements-peer-cellflow.txt`).

Reads the training pool and the held-out context's control cells (h5ad, log-normalised X),
trains CellFlow's optimal-transport flow matching once per seed and writes each seed's
predicted cells, decoded to genes, into an npz (`predictions`: seeds x cells x genes,
`seconds`: per seed). Only the numbers of `SETTINGS` are ours, fixed before any run and never
chosen on a held-out context; everything else is CellFlow's default.

CellFlow's recipe for one stimulus and a held-out group, as its PBMC example uses it:
- cells live in a PCA space fitted on the training pool (`centered_pca`); the control cells
  are projected into it and predictions decoded with the same basis;
- the stimulus is a categorical perturbation covariate (CellFlow one-hot encodes it);
- the context is a split covariate: each context's control cells are the source of its own
  flow, so the held-out context's control cells become the source at prediction time. A
  context of the pool without perturbed cells (the held-out one) has no target and is left
  out of training, as CellFlow requires.
- `seed` sets the network's initialisation; CellFlow's trainer draws its batches from a fixed
  generator.
"""

from __future__ import annotations

import argparse
import time

import anndata as ad
import numpy as np
import pandas as pd

SETTINGS = {"n_pca": 50, "condition_embedding_dim": 64, "time_encoder_dims": (256, 256),
            "hidden_dims": (512, 512), "decoder_dims": (512, 512), "learning_rate": 1e-4,
            "iterations": 1000, "batch_size": 256}  # about 4 CPU minutes per held-out type


def prepared(train: ad.AnnData, control: ad.AnnData, context_key: str, condition_key: str,
             control_value: str, n_pca: int) -> tuple[ad.AnnData, ad.AnnData]:
    """The training pool (contexts with both control and perturbed cells) and the control
    cells in the pool's PCA space, with the columns CellFlow reads."""
    from cellflow.preprocessing import centered_pca, project_pca

    condition = train.obs[condition_key].astype(str)
    context = train.obs[context_key].astype(str)
    paired = [c for c in context.unique()
              if (condition[context == c] == control_value).any()
              and (condition[context == c] != control_value).any()]
    pool = train[context.isin(paired).to_numpy()].copy()
    query = control.copy()
    for cells in (pool, query):
        cells.obs = pd.DataFrame({
            "condition": cells.obs[condition_key].astype(str).to_numpy(),
            "context": cells.obs[context_key].astype(str).to_numpy()}, index=cells.obs_names)
        cells.obs["is_control"] = (cells.obs["condition"] == control_value).astype("boolean")
        cells.X = np.asarray(cells.X.todense() if hasattr(cells.X, "todense") else cells.X,
                             np.float32)
    centered_pca(pool, n_comps=min(n_pca, pool.n_obs - 1, pool.n_vars - 1),
                 keep_centered_data=False)
    project_pca(query_adata=query, ref_adata=pool)
    return pool, query


def predict_seed(pool: ad.AnnData, query: ad.AnnData, condition: str, seed: int,
                 settings: dict) -> np.ndarray:
    """CellFlow trained with `seed`: the query's control cells under `condition` (genes)."""
    flow = trained_flow(pool, seed, settings)
    flow.train(num_iterations=settings["iterations"], batch_size=settings["batch_size"])
    return decoded(flow, pool, query, condition)


def trained_flow(pool: ad.AnnData, seed: int, settings: dict):
    """CellFlow's model on `pool` with `seed`, prepared and not yet trained."""
    import optax
    from cellflow.model import CellFlow

    flow = CellFlow(pool, solver="otfm")
    flow.prepare_data(sample_rep="X_pca", control_key="is_control",
                      perturbation_covariates={"stimulus": ("condition",)},
                      split_covariates=["context"], max_combination_length=1)
    flow.prepare_model(condition_embedding_dim=settings["condition_embedding_dim"],
                       time_encoder_dims=settings["time_encoder_dims"],
                       hidden_dims=settings["hidden_dims"],
                       decoder_dims=settings["decoder_dims"],
                       optimizer=optax.adam(settings["learning_rate"]), seed=seed)
    return flow


def decoded(flow, pool: ad.AnnData, query: ad.AnnData, condition: str) -> np.ndarray:
    """The query's control cells under `condition`, predicted in PCA space and decoded to
    genes with the pool's basis."""
    context = str(query.obs["context"].iloc[0])
    covariates = pd.DataFrame({"condition": [condition], "context": [context],
                               "is_control": [True], "condition_id": [condition]})
    covariates["is_control"] = covariates["is_control"].astype("boolean")
    out = flow.predict(adata=query, covariate_data=covariates, sample_rep="X_pca",
                       condition_id_key="condition_id")
    pcs = np.asarray(out[condition], np.float64)
    genes = pcs @ np.asarray(pool.varm["PCs"], np.float64).T
    return (genes + np.asarray(pool.varm["X_mean"], np.float64).T).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--control", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--condition", required=True)
    parser.add_argument("--seeds", required=True, help="comma-separated")
    parser.add_argument("--context_key", default="cell_type")
    parser.add_argument("--condition_key", default="condition")
    parser.add_argument("--control_value", default="control")
    parser.add_argument("--iterations", type=int, default=SETTINGS["iterations"])
    parser.add_argument("--budgets", default="",
                        help="comma-separated iteration counts: train one seed in stages and "
                             "write its prediction after each (`predictions`: budgets x cells "
                             "x genes) and the loss of every iteration (`loss`); for "
                             "benchmarks/cellflow_budget.py")
    args = parser.parse_args()
    settings = SETTINGS | {"iterations": args.iterations}
    pool, query = prepared(ad.read_h5ad(args.train), ad.read_h5ad(args.control),
                           args.context_key, args.condition_key, args.control_value,
                           settings["n_pca"])
    if args.budgets:
        write_budget_curve(pool, query, args, settings)
        return
    predictions, seconds = [], []
    for seed in (int(s) for s in args.seeds.split(",")):
        started = time.perf_counter()
        predictions.append(predict_seed(pool, query, args.condition, seed, settings))
        seconds.append(time.perf_counter() - started)
        print(f"cellflow seed {seed}: {seconds[-1]:.0f} s", flush=True)
    np.savez(args.out, predictions=np.stack(predictions), seconds=np.asarray(seconds))


def write_budget_curve(pool: ad.AnnData, query: ad.AnnData, args: argparse.Namespace,
                       settings: dict) -> None:
    """One seed trained in stages up to each of `--budgets`. CellFlow's trainer restarts its
    batch generators at every `train` call, so a stage replays the first stage's batch
    order; the parameters and optimiser state carry on."""
    budgets = sorted(int(b) for b in args.budgets.split(","))
    flow = trained_flow(pool, int(args.seeds.split(",")[0]), settings)
    predictions, losses, seconds, done, started = [], [], [], 0, time.perf_counter()
    for budget in budgets:
        flow.train(num_iterations=budget - done, batch_size=settings["batch_size"])
        losses += flow.trainer.training_logs["loss"]
        done = budget
        predictions.append(decoded(flow, pool, query, args.condition))
        seconds.append(time.perf_counter() - started)
        print(f"cellflow {budget} iterations: {seconds[-1]:.0f} s", flush=True)
    np.savez(args.out, predictions=np.stack(predictions), loss=np.asarray(losses),
             budgets=np.asarray(budgets), seconds=np.asarray(seconds))


if __name__ == "__main__":
    main()
