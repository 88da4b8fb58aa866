"""CellFlow as a peer in the OOD benchmark table: same training pools, held-out types, seeds
and metrics as every model of ours, its rows joining the table as `cellflow`.

CellFlow (theislab, `cellflow-tools`) is built on our own stack (JAX, Flax, ott-jax): conditional
flow matching with optimal-transport pairs in a PCA space, each cell type's control cells the
source of its own flow. It runs in its own environment (`--peer_python`, made from
`benchmarks/requirements-peer-cellflow.txt`) through `benchmarks/cellflow_peer_run.py`, one
process per held-out type training every seed in turn; that file fixes its few settings. This
driver hands it each held-out type's training pool and control cells, reads its predicted cells
back, and lets `perturbjax.studies.ood.run` score them and add them to the workdir's table
(registered as a `models.peer.PeerModel`). A finished (cellflow, type) cell is read back,
not trained again, so a stopped run continues where it stopped.

  python benchmarks/peer_cellflow.py --peer_python /path/to/cellflow-venv/bin/python \
      [--held_out B,NK] [--workdir runs/kang_valid]
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np

from perturbjax.data import shared_data_dir
from perturbjax.data.schema import PerturbationSpec
from perturbjax.models import register_model
from perturbjax.models.peer import PeerModel
from perturbjax.studies import ood

RUNNER = Path(__file__).with_name("cellflow_peer_run.py")


def kang_config(purpose: str) -> ood.OODConfig:
    """The benchmark's configuration on the shared Kang file, or an exit saying `purpose`
    needs it."""
    shared = shared_data_dir()
    if shared is None:
        sys.exit(f"the shared data folder (../shared/data) is absent: {purpose} needs Kang")
    return ood.OODConfig(data=str(shared / "kang" / "valid_pbmc.h5ad"))
NAME = "cellflow"


@dataclasses.dataclass(frozen=True)
class CellFlowPeer:
    """CellFlow's runner (`models.peer.PeerRunner`): one process per held-out type."""

    peer_python: str
    iterations: int | None = None  # None: the runner's own setting

    @property
    def schedule(self) -> dict:
        """What its cells depend on: the runner's code and the iterations asked for."""
        return {"runner": RUNNER.read_text(), "iterations": self.iterations}

    def __call__(self, train_cells: ad.AnnData, control_cells: ad.AnnData,
                 spec: PerturbationSpec, conditions: list[str], seeds: tuple[int, ...]
                 ) -> tuple[dict, dict]:
        predictions, runs = {}, {}
        with tempfile.TemporaryDirectory() as folder:
            train, control = Path(folder) / "train.h5ad", Path(folder) / "control.h5ad"
            train_cells.write_h5ad(train)
            control_cells.write_h5ad(control)
            for condition in conditions:
                out = Path(folder) / "predicted.npz"
                command = [self.peer_python, str(RUNNER), "--train", str(train),
                           "--control", str(control), "--out", str(out),
                           "--condition", condition, "--seeds", ",".join(map(str, seeds)),
                           "--context_key", spec.context_key,
                           "--condition_key", spec.condition_key,
                           "--control_value", str(spec.control_value)]
                if self.iterations is not None:
                    command += ["--iterations", str(self.iterations)]
                subprocess.run(command, check=True)
                with np.load(out) as saved:
                    predictions[condition] = list(saved["predictions"])
                    runs[condition] = [{"seed": seed, "train_seconds": float(seconds)}
                                       for seed, seconds in zip(seeds, saved["seconds"],
                                                                strict=True)]
        return predictions, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer_python", required=True,
                        help="interpreter of the environment of requirements-peer-cellflow.txt")
    parser.add_argument("--data", default=None, help="h5ad (default: the shared Kang file)")
    parser.add_argument("--held_out", default="", help="comma-separated (default: every type)")
    parser.add_argument("--seeds", default="1,2,19193")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--workdir", default="runs/kang_valid")
    args = parser.parse_args()
    data = args.data
    if data is None:
        shared = shared_data_dir()
        if shared is None:
            sys.exit("no --data and no shared data folder: pass the h5ad to run CellFlow on")
        data = str(shared / "kang" / "valid_pbmc.h5ad")
    config = ood.OODConfig(data=data, models=(NAME,),
                           held_out=tuple(c for c in args.held_out.split(",") if c),
                           seeds=tuple(int(s) for s in args.seeds.split(",")))
    peer = CellFlowPeer(args.peer_python, args.iterations)
    register_model(PeerModel(NAME, peer, peer.schedule))
    results = ood.run(config, args.workdir)
    print(results.summary)


if __name__ == "__main__":
    main()
