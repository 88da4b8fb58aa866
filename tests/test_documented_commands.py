"""Every command the documentation shows runs as a user types it.

Commands are read from README.md, docs/*.md and the module docstrings of the launchers
(`experiments/`) and benchmarks (`benchmarks/`). Each must have an entry in `HOW_TO_RUN`: run
as it is, or with flags appended that make it cheap (absl and argparse keep the last value of
a repeated flag), in the default run or marked slow, after writing the user's own files it
names. A documented command without an entry fails the suite, and so does an entry that no
document shows any more.

Commands run through bash in a scratch copy of a fresh clone's layout: the repository's
folders linked in, `python` and `.venv/bin/python` this interpreter, `../shared` the
development data when present, so relative paths mean what they mean to a user. Installation
steps (`python3 -m venv`, `pip install`) are left out: CI runs them from scratch in `.ci/run`.

    pytest tests/test_documented_commands.py -m "slow or not slow" -n 0 -s   # every command
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perturbjax.data import shared_data_dir
from tests.release_files import write_gdsc_release, write_mixseq_release, write_original_tables

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/*.md", "docs/results/*.md", "experiments/*.py",
             "benchmarks/*.py")
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")
RUNS_PYTHON = re.compile(r"(?:^|&&\s*)(?:\.\./)?(?:\.venv/bin/)?python3?\s+(?!-m venv)")
PEER_PYTHON = "PERTURBJAX_PEER_PYTHON"  # the published scGen's environment
METRICS_PEER_PYTHON = "PERTURBJAX_METRICS_PEER_PYTHON"  # cell-eval's and pertpy's
CELLFLOW_PEER_PYTHON = "PERTURBJAX_CELLFLOW_PYTHON"  # CellFlow's
PEER_PYTHONS = (PEER_PYTHON, METRICS_PEER_PYTHON, CELLFLOW_PEER_PYTHON)


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined."""
    return re.sub(r"\\\n\s*", " ", text).splitlines()


def _snippets(path: Path) -> list[str]:
    """Code a user would copy: fenced blocks and inline spans of Markdown, a module's
    docstring lines."""
    text = path.read_text()
    if path.suffix == ".py":
        return _logical_lines(ast.get_docstring(ast.parse(text)) or "")
    blocks = [line for block in FENCED.findall(text) for line in _logical_lines(block)]
    return blocks + INLINE.findall(FENCED.sub("", text))


def normalise(snippet: str) -> str:
    """The command as run here: comments, `[optional]` usage parts and install steps
    dropped, the interpreter spelled `python`, whitespace collapsed."""
    text = re.sub(r"\s+#.*$", "", " ".join(snippet.split()))
    text = re.sub(r"\s*\[[^\]]*\]", "", text)
    text = re.sub(r"(?:\.\./)?\.venv/bin/python3?\b", "python", text)
    steps = [step.strip() for step in text.split("&&")]
    kept = [s for s in steps if not s.startswith("python3 -m venv") and "pip install" not in s]
    return " && ".join(kept)


def documented_commands() -> dict[str, list[str]]:
    """Each command (normalised) -> the files that show it."""
    found: dict[str, list[str]] = {}
    for pattern in DOCUMENTS:
        for path in sorted(ROOT.glob(pattern)):
            for snippet in _snippets(path):
                if RUNS_PYTHON.search(snippet.strip()):
                    where = str(path.relative_to(ROOT))
                    found.setdefault(normalise(snippet), [])
                    if where not in found[normalise(snippet)]:
                        found[normalise(snippet)].append(where)
    return found


# ------------------------------------------------------------------ how each command runs


def _signature_tables(project: Path) -> None:
    rng = np.random.default_rng(0)
    genes, cells = [f"G{i:03d}" for i in range(150)], [f"cell{i:03d}" for i in range(240)]
    counts = pd.DataFrame(rng.poisson(4.0, (240, 150)), index=cells, columns=genes)
    drive = np.log1p(counts.iloc[:, :6].to_numpy()).sum(1)
    exposures = pd.DataFrame({"SBS1": 50 * drive, "SBS5": 80 - 3 * drive,
                              "SBS13": rng.gamma(2.0, 10.0, 240)}, index=cells)
    write_original_tables(project, counts, exposures)


def _gdsc_release(project: Path) -> None:
    write_gdsc_release(shared_data_dir(), project / "GDSC2_fitted_dose_response.csv",
                       project / "Cell_line_RMA_proc_basalExp.txt", drugs=("Cisplatin",))


def _kang_part(project: Path) -> None:
    """A part of the Kang table filled apart (runs/kang_b), as the merge command expects."""
    subprocess.run([sys.executable, "experiments/ood_benchmark.py", "--data",
                    "../shared/data/kang/valid_pbmc.h5ad", "--models", "mtae_ot", "--workdir",
                    "runs/kang_b", *KANG_CHEAP.split()], cwd=project, check=True)


def _mixseq_release(project: Path) -> None:
    write_mixseq_release(shared_data_dir(), project / "McFarland2020",
                         ("DMSO_24hr_expt1", "Idasanutlin_24hr_expt1"))


@dataclasses.dataclass(frozen=True)
class Run:
    """How a documented command is run here.

    Attributes:
      outputs: files (relative to the project) the command must leave.
      shows: text its output (stdout and stderr) must contain.
      cheaper: flags appended to make it cheap; empty: run as documented.
      slow: only under `-m slow`.
      needs: subfolders of the shared data it reads (skipped with a reason when absent).
      inputs: writes the user's own files that the command names.
      peer: needs a peer's interpreter (the variable naming it: one of PEER_PYTHONS, which
        replaces the command's `--peer_python`) or package.
      by_ci: the test command itself: CI runs it, this test does not.
    """

    outputs: tuple[str, ...] = ()
    shows: tuple[str, ...] = ()
    cheaper: str = ""
    slow: bool = False
    needs: tuple[str, ...] = ()
    inputs: Callable[[Path], None] | None = None
    peer: str | None = None
    by_ci: bool = False


OOD_CHEAP = ("--held_out type_0 --seeds 1 --epochs 2 --checkpoint_every 0 --ceiling_repeats 2 "
             "--progress")
KANG_CHEAP = "--held_out B --seeds 1 --epochs 2 --checkpoint_every 0 --n_top_genes 500"
SIGNATURES_CHEAP = ("--n_cells 240 --n_genes 150 --cv 3 --lasso_alphas 10 --bootstrap 50 "
                    "--stability 2 --experiments random")
DRUG_CHEAP = "--grid small --folds 2 --repeats 1 --final_seeds 0 --permutations 50"
PERTURBX_RELEASE_CHEAP = "--epochs 20 --seeds 0 --shapley_permutations 8"
PERTURBX_CHEAP = f"--lines 8 --wild_type 3 --genes 300 {PERTURBX_RELEASE_CHEAP}"
KANG = ("kang",)
GDSC_CELLS = ("gdsc", "cellbench", "gene_map")
SIGNATURE_PARTS = ("cellbench", "signatures")

HOW_TO_RUN: dict[str, Run] = {
    "python -m pytest": Run(by_ci=True),
    # the out-of-distribution benchmark
    "python experiments/ood_benchmark.py --workdir runs/ood_synthetic": Run(
        outputs=("runs/ood_synthetic/summary.md", "runs/ood_synthetic/metrics.csv",
                 "runs/ood_synthetic/figures/pca_type_0_stimulated.png"),
        shows=("Response metrics, calibrated", "epoch 2/2", "s/epoch", "model mtflow ("),
        cheaper=OOD_CHEAP),
    "python experiments/ood_benchmark.py --data ../shared/data/kang/valid_pbmc.h5ad "
    "--workdir runs/ood_kang": Run(
        outputs=("runs/ood_kang/summary.md",), cheaper=KANG_CHEAP, slow=True, needs=KANG),
    "python experiments/ood_benchmark.py --data ../shared/data/kang/valid_pbmc.h5ad "
    "--models control,mean_shift,mean_shift_balanced,linear --workdir runs/kang_references": Run(
        outputs=("runs/kang_references/summary.md",
                 "runs/kang_references/figures/calibrated_heatmap.png"),
        shows=("Response metrics, calibrated",),
        cheaper="--held_out B,NK --ceiling_repeats 2", slow=True, needs=KANG),
    "python experiments/ood_benchmark.py --data ../shared/data/kang/valid_pbmc.h5ad "
    "--models scgen,mtae_ot --workdir runs/kang_valid --merge_from runs/kang_b": Run(
        outputs=("runs/kang_valid/summary.md", "runs/kang_valid/responses/mtae_ot/B.npz"),
        cheaper=KANG_CHEAP, slow=True, needs=KANG, inputs=_kang_part),
    "python experiments/ood_benchmark.py --models scgen,scvidr,scpregan,scbutterfly,"
    "mean_shift,control --workdir runs/baselines": Run(
        outputs=("runs/baselines/summary.md",), cheaper=OOD_CHEAP, slow=True),
    "python experiments/ood_benchmark.py --design multidose --models all "
    "--workdir runs/all_multidose": Run(
        outputs=("runs/all_multidose/summary.md",), cheaper=f"{OOD_CHEAP} --epochs 1",
        slow=True),
    "python experiments/ood_benchmark.py --design multidose --models all --conditioning "
    "log_dose --held_out_conditions 1 --workdir runs/ood_multidose": Run(
        outputs=("runs/ood_multidose/summary.md",), cheaper=f"{OOD_CHEAP} --epochs 1",
        slow=True),
    "python experiments/ood_benchmark.py --synthetic_types 10 --models mtae,scgen,control,"
    "mean_shift,mean_shift_balanced,linear --figures=false --workdir runs/conformal_synthetic": Run(
        outputs=("runs/conformal_synthetic/coverage.csv",),
        shows=("Conformal intervals of the mean response",),
        cheaper="--synthetic_types 4 --seeds 1 --epochs 2 --checkpoint_every 0 "
                "--ceiling_repeats 2", slow=True),
    "python experiments/ood_benchmark.py --models all --held_out type_0,type_3 "
    "--workdir runs/ood3_single": Run(
        outputs=("runs/ood3_single/summary.md",), cheaper=OOD_CHEAP, slow=True),
    # signature exposures
    "python experiments/signatures.py --workdir runs/signatures": Run(
        outputs=("runs/signatures/summary.md",), cheaper=SIGNATURES_CHEAP, slow=True,
        needs=SIGNATURE_PARTS),
    "python experiments/signatures.py --expression counts.csv --exposures exposures.csv "
    "--workdir runs/signatures_mine": Run(
        outputs=("runs/signatures_mine/summary.md",), cheaper=SIGNATURES_CHEAP, slow=True,
        inputs=_signature_tables),
    # drug sensitivity
    "python experiments/drug_response.py --toy --grid small --workdir runs/drug_toy": Run(
        outputs=("runs/drug_toy/summary.md", "runs/drug_toy/cv.csv", "runs/drug_toy/cells.csv"),
        shows=("Transfer to single cells",)),
    "python experiments/drug_response.py --workdir runs/drug_response": Run(
        outputs=("runs/drug_response/summary.md",), cheaper=DRUG_CHEAP, slow=True,
        needs=GDSC_CELLS),
    "python experiments/drug_response.py --response GDSC2_fitted_dose_response.csv "
    "--expression Cell_line_RMA_proc_basalExp.txt --drug Cisplatin --gene_filter 1.9,0": Run(
        outputs=("runs/drug_response/summary.md",), cheaper=DRUG_CHEAP, slow=True,
        needs=GDSC_CELLS, inputs=_gdsc_release),
    # PerturbX
    "python experiments/perturbx.py --toy --epochs 60 --workdir runs/px_toy": Run(
        outputs=("runs/px_toy/summary.md", "runs/px_toy/table.csv", "runs/px_toy/ranking.csv"),
        shows=("Held-out lines", "3 folds stratified by 'tp53_wt'")),
    "python experiments/perturbx.py --workdir runs/perturbx": Run(
        outputs=("runs/perturbx/summary.md",), cheaper=PERTURBX_CHEAP, slow=True,
        needs=("gdsc",)),
    "python experiments/perturbx.py --mixseq_dir McFarland2020 --experiments "
    "DMSO_24hr_expt1,Idasanutlin_24hr_expt1 --n_top_genes 5000": Run(
        outputs=("runs/perturbx/summary.md",), cheaper=PERTURBX_RELEASE_CHEAP, slow=True,
        needs=("gdsc",), inputs=_mixseq_release),
    # benchmarks
    "python benchmarks/train_speed.py": Run(cheaper="--epochs 1", slow=True),
    "python benchmarks/route_digests.py --out before.json": Run(slow=True),
    "python benchmarks/linear_speed.py": Run(cheaper="--skip-sklearn-lasso", slow=True),
    "python benchmarks/grid_speed.py": Run(cheaper="--points 4 --epochs-scale 0.02", slow=True),
    "python benchmarks/perturbx_speed.py": Run(cheaper="--epochs 2", slow=True),
    **dict.fromkeys(
        ["python benchmarks/loo_speed.py",
         "python benchmarks/loo_speed.py --epochs 10 --workdir runs/loo_speed "
         "--out results/loo_speed/kang_mtae_10_epochs.md"],
        Run(cheaper="--data synthetic --epochs 1 --seeds 1 --workdir runs/loo_check "
            "--out runs/loo_check.md", slow=True)),
    "python benchmarks/conformal_coverage.py": Run(
        cheaper="--types 6 --train_types 4 --epochs 2 --models mtae --results runs/coverage",
        slow=True, outputs=("runs/coverage/synthetic_coverage.md",)),
    "python benchmarks/ot_speed.py": Run(cheaper="--sizes 300", slow=True, peer="ot"),
    # the same command as docs/ood_benchmark.md and the benchmark's docstring spell it
    **dict.fromkeys(
        ["python benchmarks/peer_scgen.py --peer_python PEER/bin/python",
         "python benchmarks/peer_scgen.py --peer_python /path/to/peer-venv/bin/python"],
        Run(cheaper="--epochs 1 --held_out B", slow=True, needs=KANG, peer=PEER_PYTHON,
            outputs=("results/peer_scgen/report_fixed_1.md",))),
    **dict.fromkeys(
        ["python benchmarks/peer_cellflow.py --peer_python /path/to/cellflow-venv/bin/python",
         "python benchmarks/peer_cellflow.py --peer_python ../cellflow-venv/bin/python "
         "--workdir runs/kang_valid"],
        Run(cheaper="--held_out B --seeds 1 --iterations 20 --workdir runs/cellflow_check",
            slow=True, needs=KANG, peer=CELLFLOW_PEER_PYTHON,
            outputs=("runs/cellflow_check/metrics.csv",))),
    "python benchmarks/cellflow_budget.py --peer_python /path/to/cellflow-venv/bin/python": Run(
        cheaper="--budgets 5,10 --out runs/cellflow_budget_check", slow=True, needs=KANG,
        peer=CELLFLOW_PEER_PYTHON, outputs=("runs/cellflow_budget_check/curve.csv",)),
    "python benchmarks/flow_cost.py --peer_python /path/to/cellflow-venv/bin/python": Run(
        cheaper="--iterations 10 --out runs/flow_cost_check", slow=True, needs=KANG,
        peer=CELLFLOW_PEER_PYTHON, outputs=("runs/flow_cost_check/cost.csv",)),
    "python benchmarks/metric_speed.py --peer_python /path/to/metrics-peer-venv/bin/python": Run(
        cheaper="--sizes 300 --repeats 1 --epochs 1", slow=True, needs=KANG,
        peer=METRICS_PEER_PYTHON, outputs=("results/metric_speed/report.md",)),
}

DOCUMENTED = documented_commands()


def test_every_documented_command_has_a_way_to_run():
    print("\ndocumented commands:")
    for command, where in DOCUMENTED.items():
        print(f"  {command}    [{', '.join(where)}]")
    missing = {c: w for c, w in DOCUMENTED.items() if c not in HOW_TO_RUN}
    assert not missing, f"documented commands that no test runs: {missing}"


def test_every_entry_is_a_documented_command():
    stale = sorted(set(HOW_TO_RUN) - set(DOCUMENTED))
    assert not stale, f"entries that no document shows any more: {stale}"


def _project(tmp_path: Path) -> Path:
    """A fresh clone's layout: repository folders linked in, the interpreter as `python` and
    `.venv/bin/python`, and `../shared` the development data when present."""
    project = tmp_path / "perturbjax"
    project.mkdir()
    for name in ("experiments", "benchmarks", "perturbjax", "notebooks", "pyproject.toml"):
        (project / name).symlink_to(ROOT / name)
    data = shared_data_dir()
    if data is not None:
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "data").symlink_to(data)
    (project / ".venv" / "bin").mkdir(parents=True)
    for name in ("python", "python3"):
        wrapper = project / ".venv" / "bin" / name
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        wrapper.chmod(0o755)
    return project


def _cases():
    for command, run in HOW_TO_RUN.items():
        if run.by_ci:
            continue
        marks = [pytest.mark.slow] if run.slow else []
        yield pytest.param(command, run, marks=marks, id=command.split(" --workdir")[0])


@pytest.mark.parametrize("command, run", _cases())
def test_documented_command_runs(command: str, run: Run, tmp_path: Path):
    data = shared_data_dir()
    absent = [n for n in run.needs if data is None or not (data / n).is_dir()]
    if absent:
        pytest.skip(f"shared data absent: {absent} (set PERTURBJAX_DATA)")
    if run.peer in PEER_PYTHONS and not os.environ.get(run.peer):
        pytest.skip(f"the peer's environment: set ${run.peer} to its python")
    if run.peer and run.peer not in PEER_PYTHONS and importlib.util.find_spec(run.peer) is None:
        pytest.skip(f"peer package '{run.peer}' absent: pip install -e '.[peers]'")
    project = _project(tmp_path)
    if run.inputs is not None:
        run.inputs(project)
    line = f"{command} {run.cheaper}".strip()
    if run.peer in PEER_PYTHONS:
        line = re.sub(r"--peer_python \S+", f"--peer_python {os.environ[run.peer]}", line)
    env = os.environ | {"PATH": f"{project / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", line], cwd=project, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, f"`{line}` failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    missing = [out for out in run.outputs if not (project / out).is_file()]
    assert not missing, f"`{line}` left no {missing}"
    unseen = [text for text in run.shows if text not in done.stdout + done.stderr]
    assert not unseen, f"`{line}` did not show {unseen}:\n{done.stdout[-3000:]}"
