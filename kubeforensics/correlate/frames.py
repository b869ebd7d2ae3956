"""Input normalisation shared by the correlation modules.

Correlation works on the canonical tables (see :mod:`kubeforensics.schema`)
passed as a mapping of table name to a pandas ``DataFrame`` (or a pyarrow
``Table``).  A missing table is an empty frame; a missing column is null.
String columns are returned with ``""`` for null so that comparisons never
meet ``NaN``; list columns hold Python lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from kubeforensics.schema import TABLES, TableSpec, audit_request_keys

Tables = Mapping[str, Any]

STAGE_RANK = {"ResponseComplete": 0, "ResponseStarted": 1, "Panic": 2, "RequestReceived": 3}
RUNTIME_PARENTS = ("runc", "containerd-shim", "containerd-shim-runc-v2", "runc:[2:INIT]", "conmon", "crun")
SHELLS = frozenset(
    [
        "sh",
        "bash",
        "dash",
        "zsh",
        "ash",
        "ksh",
        "fish",
        "busybox",
        "python",
        "python3",
        "perl",
        "ruby",
        "php",
        "node",
        "nc",
        "ncat",
        "socat",
        "curl",
        "wget",
        "kubectl",
        "nsenter",
        "chroot",
        "apt",
        "apk",
        "yum",
        "scp",
        "ssh",
    ]
)


def empty(spec: TableSpec) -> pd.DataFrame:
    """An empty frame with the columns of ``spec`` and their pandas dtypes."""
    return _fix(pd.DataFrame({c: pd.Series([], dtype=object) for c in spec.names}), spec)


def _fix(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    df = df.copy()
    for col in spec.columns:
        if col.name not in df.columns:
            df[col.name] = None
        s = df[col.name]
        if col.type == "json" and len(df) > LIST_NORMALISE_MAX:
            continue  # large JSON columns stay as read (null = NaN): filling them copies gigabytes
        if col.type in ("str", "json"):
            if isinstance(s.dtype, pd.StringDtype):
                if s.hasnans:
                    df[col.name] = s.fillna("")
            elif s.dtype == object and not s.hasnans and len(s) > 0 and isinstance(s.iloc[0], str):
                df[col.name] = s.astype("str")
            else:
                df[col.name] = s.astype(object).where(s.notna(), "").astype("str")
        elif col.type == "ts":
            if not isinstance(s.dtype, pd.DatetimeTZDtype):
                df[col.name] = pd.to_datetime(s, utc=True, errors="coerce")
        elif col.type in ("int64", "int32"):
            if s.dtype == object or not pd.api.types.is_numeric_dtype(s):
                df[col.name] = pd.to_numeric(s, errors="coerce").astype("Int64")
        elif col.type == "list<str>" and len(df) <= LIST_NORMALISE_MAX:
            df[col.name] = [as_list(v) for v in s]
    return df


#: list columns of larger tables are left as they come (arrays, or None for null): use :func:`as_list`
LIST_NORMALISE_MAX = 50_000


def as_list(v: Any) -> list[str]:
    """A list column's value as a list of strings (``[]`` for null)."""
    if v is None:
        return []
    if isinstance(v, float) and np.isnan(v):
        return []
    if isinstance(v, str):
        return [v] if v else []
    return [str(x) for x in v]


def table(tables: Tables, name: str) -> pd.DataFrame:
    """The canonical table ``name`` from ``tables`` as a normalised DataFrame.

    Parameters
    ----------
    tables : mapping
        Table name to ``pandas.DataFrame`` or ``pyarrow.Table``.
    name : str
        A key of :data:`kubeforensics.schema.TABLES`.

    Returns
    -------
    pandas.DataFrame
        All declared columns present; strings never null; list columns as lists
        (for tables over 50,000 rows list and JSON columns stay as read: use
        :func:`as_list`, and expect NaN for a null JSON value).
    """
    spec = TABLES[name]
    obj = tables.get(name) if tables is not None else None
    if obj is None:
        return empty(spec)
    if not isinstance(obj, pd.DataFrame):
        obj = obj.to_pandas()
    if obj.attrs.get("_kf_normalised"):
        return obj
    out = _fix(obj, spec).reset_index(drop=True)
    out.attrs["_kf_normalised"] = True
    return out


def normalise(tables: Tables, names: Iterable[str] = tuple(TABLES)) -> dict[str, pd.DataFrame]:
    """Normalise several tables at once (see :func:`table`); audit is de-duplicated."""
    out = {n: table(tables, n) for n in names}
    if "audit" in out:
        out["audit"] = dedupe_audit(out["audit"], light=True)
    return out


BODY_COLUMNS = ("request_object", "response_object", "annotations", "user_extra")


def dedupe_audit(audit: pd.DataFrame, *, light: bool = False) -> pd.DataFrame:
    """One row per audit request: the most complete stage, at the earliest request time.

    Stages rank ResponseComplete > ResponseStarted > Panic > RequestReceived.
    Rows without an ``audit_id`` are kept as they are.  ``time`` becomes the
    earliest ``request_time`` (or ``time``) seen for the request.

    With ``light=True`` (what correlation uses) the large JSON columns are
    kept only where correlation reads them -- request/response objects of pod
    requests and of creates -- and are ``""`` elsewhere; this avoids copying
    gigabytes of bodies on million-event cases.
    """
    if audit.attrs.get("_kf_deduped") or audit.empty:
        audit.attrs["_kf_deduped"] = True
        return audit
    # choose rows on a few small columns, then take every column once
    k = pd.DataFrame(
        {
            "id": audit_request_keys(audit).values,  # audit id, user, verb and URI: one request
            "req": audit["request_time"]
            .where(audit["request_time"].notna(), audit["time"])
            .dt.tz_convert(None)
            .to_numpy(),
            "rank": audit["stage"].map(STAGE_RANK).fillna(4).values,
            "pos": np.arange(len(audit)),
        }
    )
    has_id = k["id"] != ""
    keyed = k[has_id]
    first_req = keyed.groupby("id", sort=False)["req"].min()
    best = keyed.sort_values(["id", "rank"], kind="stable").drop_duplicates("id", keep="first")
    best = best.assign(req=best["id"].map(first_req).values)
    chosen = pd.concat([best, k[~has_id]], ignore_index=True)
    naive_time = audit["time"].dt.tz_convert(None).to_numpy()
    chosen["req"] = chosen["req"].where(chosen["req"].notna(), naive_time[chosen["pos"].values])
    chosen = chosen.sort_values(["req", "pos"], kind="stable")
    pos = chosen["pos"].values
    if light:
        thin = audit.drop(columns=[c for c in BODY_COLUMNS if c in audit.columns])
        out = thin.take(pos).reset_index(drop=True)
        want = ((audit["resource"] == "pods") | (audit["verb"] == "create")).to_numpy()[pos]
        idx = np.flatnonzero(want)
        for c in BODY_COLUMNS:
            if c not in audit.columns:
                continue
            col = np.full(len(out), "", dtype=object)
            if c in ("request_object", "response_object") and len(idx):
                col[idx] = audit[c].take(pos[idx]).fillna("").to_numpy(dtype=object)
            out[c] = pd.Series(col, dtype="str")
    else:
        out = audit.take(pos).reset_index(drop=True)
    out["time"] = pd.to_datetime(chosen["req"].values, utc=True)
    out.attrs["_kf_normalised"] = True
    out.attrs["_kf_deduped"] = True
    return out


def basename(s: pd.Series) -> pd.Series:
    """Last path component of each string (``/usr/bin/bash`` -> ``bash``)."""
    return s.str.rsplit("/", n=1).str[-1].fillna("")


def cid(s: pd.Series) -> pd.Series:
    """Container ids without the runtime scheme, lower-case."""
    return s.str.replace(r"^[a-z]+://", "", regex=True).str.lower()


def is_runtime(binary: pd.Series) -> pd.Series:
    """Is the binary a container runtime (runc, containerd-shim, conmon, crun)?"""
    b = basename(binary)
    return b.isin(RUNTIME_PARENTS) | b.str.startswith("containerd-shim") | b.str.startswith("runc")


def pod_key(namespace: pd.Series, pod: pd.Series) -> pd.Series:
    """``namespace/pod`` or ``""`` when the pod is unknown."""
    return (namespace + "/" + pod).where(pod != "", "")


def asof_join(left: pd.DataFrame, right: pd.DataFrame, by: list[str], **kw) -> pd.DataFrame:
    """``merge_asof`` with string keys of one dtype on both sides and ns timestamps."""
    left = left.astype({c: object for c in by if left[c].dtype != "int64"})
    right = right.astype({c: object for c in by if right[c].dtype != "int64"})
    lt, rt = kw["left_on"], kw["right_on"]
    left = left.assign(**{lt: left[lt].dt.as_unit("ns")}).sort_values(lt)
    right = right.assign(**{rt: right[rt].dt.as_unit("ns")}).sort_values(rt)
    return pd.merge_asof(left, right, by=by, **kw)
