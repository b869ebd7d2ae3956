"""The attack story: ordered, merged, explained steps built from findings and correlation.

How a step is chosen is documented in ``docs/story.md``; in short: candidates
come from findings, correlation signals and Falco alerts
(:mod:`kubeforensics.correlate.signals`), are filtered by the seed and time
window, merged when they describe the same thing (same tactic and entity
within two minutes, or shared evidence), and completed from their evidence
rows (pod, actor, process, destination IP).  Every step keeps ``why``: the
producers that put it there.

Example
-------
>>> story = build_story(case.frames(), seed="default/web-1")     # doctest: +SKIP
>>> print(story.to_markdown())                                    # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from kubeforensics.correlate.context import Context, as_context
from kubeforensics.correlate.evidence import enrich
from kubeforensics.correlate.frames import Tables
from kubeforensics.correlate.noise import SYSTEM_ACTORS
from kubeforensics.correlate.signals import (
    CAND_COLS,
    STEP_KEYS,
    TACTICS,
    from_alerts,
    from_correlation,
    from_findings,
    label,
    tactic_name,
)

log = logging.getLogger(__name__)

MERGE_GAP = pd.Timedelta(minutes=2)
ATTACH_GAP = pd.Timedelta(seconds=10)
ORIGIN_RANK = {"finding": 0, "exec": 1, "host_ns": 1, "token": 1, "blind": 2, "falco": 3}
JSON_KEYS = STEP_KEYS


@dataclass
class Step:
    """One attack step: what happened, where, by whom, on which evidence, and why it is in the story."""

    time: pd.Timestamp
    tactic: str
    techniques: list[str]
    summary: str
    namespace: str = ""
    pod: str = ""
    actor: str = ""
    process: str = ""
    dst_ip: str = ""
    event_ids: list[str] = field(default_factory=list)
    severity: str = "medium"
    why: list[str] = field(default_factory=list)
    src_ip: str = ""

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in JSON_KEYS}
        d["time"] = self.time.isoformat().replace("+00:00", "Z")
        d["severity"] = self.severity
        d["why"] = list(self.why)
        d["src_ip"] = self.src_ip
        return d


@dataclass
class Story:
    """The ordered steps of an attack (see :func:`build_story`)."""

    steps: list[Step]
    seed: Any = None

    def __len__(self) -> int:
        return len(self.steps)

    def to_json(self) -> dict[str, Any]:
        """``{"steps": [{"time", "tactic", "techniques", "summary", "namespace", "pod", "actor", "process",
        "dst_ip", "event_ids", "severity", "why"}]}`` (time in RFC 3339, UTC)."""
        return {"steps": [s.to_json() for s in self.steps]}

    def to_frame(self) -> pd.DataFrame:
        """One row per step."""
        return pd.DataFrame([{**s.__dict__} for s in self.steps], columns=[*JSON_KEYS, "severity", "why"])

    def to_markdown(self) -> str:
        """The story as Markdown: steps in time order under their ATT&CK tactic, with evidence and reasons."""
        if not self.steps:
            return (
                "# Attack story\n\nNo suspicious activity found"
                + (f" for seed `{self.seed}`." if self.seed else ".")
                + "\n"
            )
        lines = ["# Attack story", ""]
        if self.seed is not None:
            lines += [f"Seed: `{_md(str(self.seed))}`", ""]
        tactic = None
        for n, s in enumerate(self.steps, 1):
            if s.tactic != tactic:
                tactic = s.tactic
                lines += [f"## {tactic or 'Unclassified'}", ""]
            where = "/".join(x for x in (s.namespace, s.pod) if x)
            facts = [f"**{s.severity}**", ", ".join(s.techniques)]
            facts += [f"pod `{_md(where)}`"] if where else []
            facts += [f"actor `{_md(s.actor)}`"] if s.actor else []
            facts += [f"process `{_md(s.process)}`"] if s.process else []
            facts += [f"destination `{_md(s.dst_ip)}`"] if s.dst_ip else []
            ev = ", ".join(f"`{e}`" for e in s.event_ids[:5]) + (
                f" and {len(s.event_ids) - 5} more" if len(s.event_ids) > 5 else ""
            )
            lines += [
                f"{n}. {s.time.strftime('%Y-%m-%d %H:%M:%S')}Z — {_md(s.summary)}",
                f"   - {' · '.join(f for f in facts if f)}",
                f"   - why: {_md('; '.join(s.why))}",
                f"   - evidence: {ev}",
                "",
            ]
        return "\n".join(lines)


def _md(text: str) -> str:
    """Escape attacker-controlled text for Markdown (and the HTML it may become)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([`*_\[\]|])", r"\\\1", text)


def _findings(tables: Tables, findings: pd.DataFrame | None) -> pd.DataFrame | None:
    if findings is not None:
        return findings
    try:
        from kubeforensics.detect import run_rules
    except ImportError as exc:
        log.info("detection engine not available (%s): story uses correlation and Falco only", exc)
        return None
    return run_rules(tables)


def build_story(
    tables: Tables | Context,
    findings: pd.DataFrame | None = None,
    *,
    seed: Any = None,
    since: Any = None,
    until: Any = None,
    min_severity: str | None = None,
) -> Story:
    """Reconstruct the attack story.

    Parameters
    ----------
    tables : mapping or Context
        The canonical tables by name (missing ones are empty).
    findings : DataFrame, optional
        Findings of :func:`kubeforensics.detect.run_rules`; computed when omitted
        (if the detection engine is importable).
    seed : str or dict, optional
        Where to start: a finding (rule id or row index), a pod (``ns/name`` or
        name), a user, an IP, or a dict with any of ``finding``, ``pod``,
        ``user``, ``ip``.  The story then holds the steps connected to the seed
        through shared pods, actors and IPs.  Without a seed: everything
        suspicious.
    since, until : time, optional
        Time window (inclusive).
    min_severity : str, optional
        Drop candidates below this severity (``info`` keeps everything); by
        default ``medium`` for the whole case and ``low`` around a seed.

    Returns
    -------
    Story
    """
    ctx = as_context(tables)
    fnd = _findings(ctx.raw, findings)
    parts = [from_findings(fnd), from_correlation(ctx), from_alerts(ctx)]
    cand = (
        pd.concat([p for p in parts if not p.empty], ignore_index=True)
        if any(not p.empty for p in parts)
        else pd.DataFrame(columns=CAND_COLS)
    )
    if cand.empty:
        return Story([], seed)
    cand["time"] = pd.to_datetime(cand["time"], utc=True)
    cand["tactic"] = [tactic_name(t, techs) for t, techs in zip(cand["tactic"], cand["techniques"])]
    cand = cand[cand["time"].notna()]
    floor = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}[min_severity or ("low" if seed else "medium")]
    cand = cand[cand["severity"].astype(int) >= floor]
    if since is not None:
        cand = cand[
            cand["time"] >= pd.Timestamp(since).tz_convert("UTC")
            if pd.Timestamp(since).tzinfo
            else cand["time"] >= pd.Timestamp(since).tz_localize("UTC")
        ]
    if until is not None:
        cand = cand[
            cand["time"] <= pd.Timestamp(until).tz_convert("UTC")
            if pd.Timestamp(until).tzinfo
            else cand["time"] <= pd.Timestamp(until).tz_localize("UTC")
        ]
    cand = enrich(ctx, cand.reset_index(drop=True))
    # enrich() caps look-alikes (node agents, the runtime, kubectl debug pods): apply the floor again after it
    cand = cand[cand["severity"].astype(int) >= floor].reset_index(drop=True)
    if seed is not None:
        cand = _select_seed(cand, seed, fnd)
    steps = _merge(cand)
    return Story(steps, seed)


# ------------------------------------------------------------------------ seed
def _seed_dict(seed: Any, findings: pd.DataFrame | None) -> dict[str, Any]:
    if isinstance(seed, Mapping):
        return dict(seed)
    if isinstance(seed, int):
        return {"finding": seed}
    s = str(seed)
    if findings is not None and not findings.empty and s in set(findings["rule_id"]):
        return {"finding": s}
    try:
        ipaddress.ip_address(s)
        return {"ip": s}
    except ValueError:
        pass
    if s.startswith("system:") or "@" in s:
        return {"user": s}
    return {"pod": s, "user": s}


def _select_seed(cand: pd.DataFrame, seed: Any, findings: pd.DataFrame | None) -> pd.DataFrame:
    """Candidates connected to the seed through pods, actors and IPs (two rounds of expansion)."""
    sd = _seed_dict(seed, findings)
    pods: set[str] = set()
    actors: set[str] = set()
    ips: set[str] = set()
    start = pd.Series(False, index=cand.index)
    podkey = cand["namespace"] + "/" + cand["pod"]
    if "finding" in sd:
        f = sd["finding"]
        want = (
            f"finding:{findings.loc[f, 'rule_id']}"
            if isinstance(f, int) and findings is not None
            else f"finding:{f}"
        )
        start |= cand["origin"] == want
    if "pod" in sd:
        p = str(sd["pod"])
        start |= (podkey == p) | (cand["pod"] == p)
    if "user" in sd:
        start |= cand["actor"] == str(sd["user"])
    if "ip" in sd:
        start |= (cand["dst_ip"] == sd["ip"]) | cand["summary"].str.contains(re.escape(str(sd["ip"])) + r"\b")
    chosen = start
    for _ in range(2):
        sel = cand[chosen]
        pods |= set(podkey[chosen & (cand["pod"] != "")])
        actors |= {a for a in sel["actor"] if a and not SYSTEM_ACTORS.match(a)}
        ips |= {i for i in sel["dst_ip"] if i}
        chosen = chosen | podkey.isin(pods) | cand["actor"].isin(actors) | cand["dst_ip"].isin(ips)
    return cand[chosen]


# ---------------------------------------------------------------------- merge
def _entity(cand: pd.DataFrame) -> pd.Series:
    return (cand["namespace"] + "/" + cand["pod"]).where(cand["pod"] != "", "actor:" + cand["actor"])


def _merge(cand: pd.DataFrame) -> list[Step]:
    """Merge candidates into steps, greedily in time order.

    A candidate joins an open step (one that started at most MERGE_GAP earlier) of the same tactic
    when they share evidence, or are about the same entity with a common technique.  A candidate
    without techniques (a Falco rule with no ATT&CK tag) joins the step about the same entity
    nearest in time within ATTACH_GAP, whatever its tactic.
    """
    if cand.empty:
        return []
    cand = cand.assign(
        _ent=_entity(cand), _rank=cand["origin"].str.split(":").str[0].map(ORIGIN_RANK).fillna(4)
    )
    cand = cand.sort_values("time", kind="stable").reset_index(drop=True)
    grp = [-1] * len(cand)
    starts: list[pd.Timestamp] = []
    lasts: list[pd.Timestamp] = []
    techs_of: list[set[str]] = []
    by_key: dict[tuple[str, str], list[int]] = {}
    by_id: dict[tuple[str, str], int] = {}
    bare: list[int] = []
    rows = zip(cand["time"], cand["tactic"], cand["_ent"], cand["techniques"], cand["event_ids"])
    for i, (t, tactic, ent, techs, ids) in enumerate(rows):
        if not techs:
            bare.append(i)
            continue
        target = next((by_id[(tactic, e)] for e in ids[:50] if (tactic, e) in by_id), None)
        if target is not None and t - starts[target] > MERGE_GAP:
            target = None
        if target is None:
            target = next(
                (
                    c
                    for c in reversed(by_key.get((tactic, ent), []))
                    if t - starts[c] <= MERGE_GAP and techs_of[c] & set(techs)
                ),
                None,
            )
        if target is None:
            target = len(starts)
            starts.append(t)
            lasts.append(t)
            techs_of.append(set())
            by_key.setdefault((tactic, ent), []).append(target)
        grp[i] = target
        lasts[target] = max(lasts[target], t)
        techs_of[target] |= set(techs)
        for e in ids[:50]:
            by_id.setdefault((tactic, e), target)
    ent_steps: dict[str, list[int]] = {}
    for (_, ent), lst in by_key.items():
        ent_steps.setdefault(ent, []).extend(lst)
    for i in bare:
        t, ent = cand.at[i, "time"], cand.at[i, "_ent"]
        near = [(min(abs(t - starts[c]), abs(t - lasts[c])), c) for c in ent_steps.get(ent, [])]
        near = [x for x in near if x[0] <= ATTACH_GAP]
        if near:
            grp[i] = min(near)[1]
        else:
            grp[i] = len(starts)
            starts.append(t)
            lasts.append(t)
    cand["_grp"] = grp
    steps = []
    for _, g in cand.groupby("_grp", sort=False):
        lead = g.sort_values(["severity", "_rank", "time"], ascending=[False, True, True]).iloc[0]
        techs = list(dict.fromkeys(t for lst in g["techniques"] for t in lst))
        ids = list(dict.fromkeys(e for lst in g.sort_values("time")["event_ids"] for e in lst))

        by_time = g.sort_values("time")

        def pick(col: str, lead: pd.Series = lead, by_time: pd.DataFrame = by_time) -> str:
            return str(lead[col] if lead[col] else next((x for x in by_time[col] if x), ""))

        steps.append(
            Step(
                time=g["time"].min(),
                tactic=str(lead["tactic"]),
                techniques=techs,
                summary=str(lead["summary"]),
                namespace=pick("namespace"),
                pod=pick("pod"),
                actor=pick("actor"),
                process=pick("process"),
                dst_ip=pick("dst_ip"),
                src_ip=pick("src_ip"),
                event_ids=ids,
                severity=label(int(g["severity"].max())),
                why=list(dict.fromkeys(g["why"])),
            )
        )
    order = {t: n for n, t in enumerate(TACTICS)}
    steps.sort(key=lambda s: (s.time, order.get(s.tactic, 99)))
    return steps
