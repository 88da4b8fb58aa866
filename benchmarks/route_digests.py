"""Digests of every fitting route's numbers on the embedded synthetic design, for refactors.

A change that should not move a single number (a new model interface, a module split) is
checked by running this before and after it on the same machine and comparing the two JSON
files: one short synthetic cell per fitting route (plain, OT, plus-OT, per-condition,
unpaired, inner-context selection, one program), each digest the SHA-256 of a model's
predicted responses and of its metrics rows (timings and descriptive labels left out).

    python benchmarks/route_digests.py --out before.json

on the old commit, then the same with `--out after.json` on the new one, and the script's
`--compare before.json after.json` says "bitwise equal" or names each model that differs
(about 2 minutes a run on one core).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from perturbjax.studies.ood import OODConfig, run
from perturbjax.studies.ood.rows import LABELS, base_model

REFERENCES = ("control", "mean_shift", "mean_shift_balanced", "linear")
# run name -> (models, configuration, held-out contexts, one program)
ROUTES = {
    "plain_ot_plus_ot_per_condition_unpaired": (
        ("mtae", "mtae_ot", "mtae_plus_ot", "scgen", "scpregan"), "reconstruction", 1, False),
    "inner_context": (("mtae", "mtae_ot_response"), "default", 1, False),
    "one_program": (("mtae", "mtae_ot"), "reconstruction", 2, True),
}
EPOCHS = 4
# Left out of the digests: timings, and the descriptive columns (`ood.rows.LABELS`).
UNDIGESTED = ("scoring_seconds", "reference_seconds", "train_seconds", *LABELS)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def digests(workdir: Path) -> dict[str, str]:
    """model -> digest of its responses files and metrics rows, from a finished workdir."""
    table = pd.read_csv(workdir / "metrics.csv", float_precision="round_trip")
    table = table.drop(columns=[c for c in UNDIGESTED if c in table.columns])
    out = {}
    for model in sorted(set(table["model"].map(base_model))):
        parts = []
        for path in sorted((workdir / "responses" / model).glob("*.npz")):
            with np.load(path) as saved:
                parts += [saved["keys"].tobytes(), saved["responses"].tobytes()]
        rows = table[table["model"].map(base_model) == model]
        parts.append(rows.to_csv(index=False).encode())
        out[model] = sha(b"".join(parts))
    return out


def measure() -> dict[str, dict[str, str]]:
    contexts = [f"type_{i}" for i in range(OODConfig().synthetic.n_types)]
    found = {}
    for name, (models, configuration, n_held, one_program) in ROUTES.items():
        config = OODConfig(models=(*models, *REFERENCES), configuration=configuration,
                           held_out=tuple(contexts[:n_held]), epochs=EPOCHS, figures=False,
                           one_program=one_program, seeds=(1, 2))
        with tempfile.TemporaryDirectory() as workdir:
            run(config, workdir)
            found[name] = digests(Path(workdir))
        print(name, found[name], flush=True)
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path)
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        differ = [f"{r}/{m}" for r in before for m in before[r]
                  if after.get(r, {}).get(m) != before[r][m]]
        print("bitwise equal" if not differ else f"differ: {differ}")
        return 1 if differ else 0
    found = measure()
    if args.out:
        args.out.write_text(json.dumps(found, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
