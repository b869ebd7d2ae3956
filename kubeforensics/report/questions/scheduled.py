"""Questions of the scheduled (nightly) report: the last N hours of a case."""

from __future__ import annotations

from typing import Any

import pandas as pd

from kubeforensics.report.answers import Answer
from kubeforensics.report.questions.common import col, event_ids, none_found, when


def window(case: Any, hours: float, until: Any = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``(since, until)``: the last ``hours`` before ``until`` (default: the end of the evidence)."""
    end = pd.Timestamp(until) if until else case.extent()[1]
    if end is None:
        end = pd.Timestamp.now(tz="UTC")
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    return end - pd.Timedelta(hours=float(hours)), end


def new_findings(inv) -> Answer:
    """Findings first seen in the window, most severe first."""
    q = "Which findings are new in this window?"
    f = inv.findings
    if inv.since is not None:
        f = f[f["first_seen"] >= pd.Timestamp(inv.since)]
    if f.empty:
        return none_found(q, "no finding first seen in the window")
    by = f["severity"].astype(str).value_counts()
    facts = {"new": len(f), "by_severity": {k: int(v) for k, v in by.items() if v},
             "rules": sorted(set(f["rule_id"]))}
    return Answer(q, f"{len(f)} new findings ({', '.join(f'{v} {k}' for k, v in by.items() if v)})", facts,
                  event_ids(f)[:30], f[["severity", "rule_id", "techniques", "namespace", "pod", "summary"]])


def top_talkers(inv, top: int = 10) -> Answer:
    """The sources with the most flows in the window, and their distinct destinations."""
    q = "Who talked the most?"
    fl = inv.slice("flows", columns=["time", "is_reply", "src_namespace", "src_pod", "src_ip", "dst_ip", "verdict"])
    if fl.empty:
        return none_found(q, "no flows in the window")
    fl = fl[~fl["is_reply"].fillna(False).astype(bool)]
    src = (col(fl, "src_namespace") + "/" + col(fl, "src_pod")).where(col(fl, "src_pod") != "", col(fl, "src_ip"))
    g = fl.assign(src=src).groupby("src")
    t = pd.DataFrame({"flows": g.size(), "destinations": g["dst_ip"].nunique(),
                      "dropped": g["verdict"].agg(lambda s: int((s == "DROPPED").sum()))})
    t = t.sort_values("flows", ascending=False).head(top).reset_index()
    facts = {"top": list(t["src"])}
    return Answer(q, f"top talker {t['src'].iloc[0]} ({int(t['flows'].iloc[0]):,} flows) from "
                     f"{when(fl['time'].min())} to {when(fl['time'].max())}", facts, [], t)
