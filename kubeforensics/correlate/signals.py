"""Story candidates: one row per piece of suspicious evidence, before merging into steps.

Three producers feed the story (see ``docs/story.md``):

* findings of the detection engine (``kubeforensics.detect.run_rules``);
* correlation signals computed here from links, trees and blind spots: exec
  sessions, entry into host namespaces, containers without an API object,
  tokens used away from their pod, unaudited interactive processes,
  pod-network addresses no pod held;
* Falco alerts (priority Notice or above), with techniques and tactic from
  their ``T1234`` and ``mitre_*`` tags.

Every candidate has the columns of :data:`CAND_COLS`; ``severity`` is an
int (0 info ... 4 critical) and ``why`` says which evidence produced it.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd

from kubeforensics.correlate.blindspots import blind_spots
from kubeforensics.correlate.context import Context
from kubeforensics.correlate.frames import as_list, basename
from kubeforensics.correlate.links import exec_sessions
from kubeforensics.correlate.tokens import token_uses

log = logging.getLogger(__name__)

#: The keys of a story step in ``Story.to_json()`` (the fixed contract).
STEP_KEYS = ("time", "tactic", "techniques", "summary", "namespace", "pod", "actor", "process", "dst_ip", "event_ids")
#: A story candidate: a step's keys plus what the story builder needs to rank and merge it.
CAND_COLS = [*STEP_KEYS, "severity", "why", "origin", "src_ip", "hint_process"]
SEVERITY = {"info": 0, "informational": 0, "low": 1, "medium": 2, "warning": 2, "high": 3, "critical": 4}
LABEL = {0: "info", 1: "low", 2: "medium", 3: "high", 4: "critical"}
TACTICS = [
    "Reconnaissance",
    "Initial Access",
    "Execution",
    "Persistence",
    "Privilege Escalation",
    "Defense Evasion",
    "Credential Access",
    "Discovery",
    "Lateral Movement",
    "Collection",
    "Command and Control",
    "Exfiltration",
    "Impact",
]
FALCO_TACTIC = {f"mitre_{t.lower().replace(' ', '_')}": t for t in TACTICS}
FALCO_TACTIC.update({"mitre_command_and_control": "Command and Control", "mitre_persistence": "Persistence"})
FALCO_SEVERITY = {0: 4, 1: 4, 2: 3, 3: 2, 4: 2, 5: 1, 6: 0, 7: 0}
MAX_IDS = 500


# the tactic a technique most often stands for in a Kubernetes intrusion (used when a source gives none)
TECH_TACTIC = {
    "T1190": "Initial Access", "T1078": "Initial Access", "T1133": "Initial Access",
    "T1059": "Execution", "T1609": "Execution", "T1610": "Execution", "T1204": "Execution",
    "T1053": "Persistence", "T1098": "Persistence", "T1136": "Persistence", "T1543": "Persistence",
    "T1546": "Persistence", "MS-TA9017": "Persistence",
    "T1611": "Privilege Escalation", "T1068": "Privilege Escalation",
    "T1070": "Defense Evasion", "T1036": "Defense Evasion", "T1562": "Defense Evasion", "T1564": "Defense Evasion",
    "T1528": "Credential Access", "T1552": "Credential Access",
    "T1613": "Discovery", "T1046": "Discovery", "T1069": "Discovery", "T1087": "Discovery",
    "T1005": "Collection", "T1560": "Collection", "T1119": "Collection",
    "T1071": "Command and Control", "T1105": "Command and Control", "T1572": "Command and Control",
    "T1090": "Command and Control", "T1048": "Exfiltration", "T1041": "Exfiltration", "T1567": "Exfiltration",
    "T1496": "Impact", "T1485": "Impact", "T1499": "Impact",
}  # fmt: skip
_TACTIC_BY_KEY = {re.sub(r"[^a-z]", "", t.lower()): t for t in TACTICS}
_IP = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$|^[0-9a-f]*:[0-9a-f:]+$")


def tactic_name(value: str, techniques: list[str] | None = None) -> str:
    """ATT&CK tactic display name from ``privilege-escalation``, ``mitre_privilege_escalation`` or
    ``Privilege Escalation``; inferred from the first known technique when empty or unknown."""
    key = re.sub(r"[^a-z]", "", str(value).lower().removeprefix("mitre_"))
    if key in _TACTIC_BY_KEY:
        return _TACTIC_BY_KEY[key]
    for t in techniques or []:
        name = TECH_TACTIC.get(t) or TECH_TACTIC.get(t.split(".")[0])
        if name:
            return name
    return str(value)


def _cands(**cols) -> pd.DataFrame:
    df = pd.DataFrame(cols)
    for c in CAND_COLS:
        if c not in df.columns:
            df[c] = ""
    return df[CAND_COLS]


def from_findings(findings: pd.DataFrame | None) -> pd.DataFrame:
    """Candidates from the detection engine's findings (one per finding row)."""
    if findings is None or findings.empty:
        return _cands()
    f = findings
    sev = f["severity"].astype(str).str.lower().map(SEVERITY).fillna(2).astype(int)
    tech = f["techniques"].map(
        lambda v: (
            [str(x) for x in v]
            if isinstance(v, (list, tuple, np.ndarray))
            else ([v] if isinstance(v, str) and v else [])
        )
    )
    ids = f["event_ids"].map(
        lambda v: [str(x) for x in v][:MAX_IDS] if isinstance(v, (list, tuple, np.ndarray)) else []
    )

    def s(col: str) -> pd.Series:
        return f[col].fillna("").astype(str) if col in f.columns else pd.Series("", index=f.index)

    # some rules put the process or an address in ``actor``: keep actors for identities
    actor = s("actor")
    is_path = actor.str.startswith("/")
    is_ip = actor.str.match(_IP)
    # and a container id or "?" in ``pod`` when the pod is unknown: evidence fills it in later
    pod = s("pod")
    not_pod = pod.str.fullmatch(r"[0-9a-f]{12,64}|\?|-") & (s("namespace").isin(["", "?", "-"]))
    return _cands(
        time=pd.to_datetime(f["first_seen"], utc=True),
        tactic=s("tactic"),
        techniques=tech,
        summary=s("summary").where(s("summary") != "", s("title")),
        namespace=s("namespace"),
        pod=pod.where(~not_pod, ""),
        actor=actor.where(~(is_path | is_ip), ""),
        hint_process=actor.where(is_path, ""),
        event_ids=ids,
        severity=sev,
        why="finding " + s("rule_id") + " '" + s("title") + "' (" + f["count"].astype(str) + " events)",
        origin="finding:" + s("rule_id"),
    )


def from_alerts(ctx: Context, max_rank: int = 5) -> pd.DataFrame:
    """Candidates from Falco alerts of priority Notice or above (with the process each one is about)."""
    a = ctx.t["alerts"]
    a = a[a["priority_rank"].fillna(7) <= max_rank]
    if a.empty:
        return _cands()
    tags = a["tags"].map(as_list)
    tech = tags.map(lambda t: [x for x in t if x[:1] == "T" and x[1:5].isdigit()])
    tactic = tags.map(lambda t: next((FALCO_TACTIC[x] for x in t if x in FALCO_TACTIC), ""))
    pod = a["pod"].where(a["pod"] != "", a["ka_name"].where(a["ka_resource"] == "pods", ""))
    ns = a["namespace"].where(a["namespace"] != "", a["ka_namespace"])
    actor = a["ka_user"]
    summary = "Falco '" + a["rule"] + "': " + a["output"].str.replace(r"^\S+: \w+ ", "", regex=True).str[:240]
    lk = ctx.links
    proc_of = (
        lk[lk["kind"] == "alert_process"]
        .drop_duplicates("from_event_id")
        .set_index("from_event_id")["to_event_id"]
    )
    ids = a["event_id"].map(lambda e: [e, proc_of[e]] if e in proc_of.index else [e])
    return _cands(
        time=a["time"],
        tactic=tactic,
        techniques=tech,
        summary=summary,
        namespace=ns,
        pod=pod,
        actor=actor,
        process=a["proc_exepath"].where(a["proc_exepath"] != "", a["proc_name"]),
        event_ids=ids,
        severity=a["priority_rank"].fillna(5).astype(int).map(FALCO_SEVERITY),
        why="Falco alert '" + a["rule"] + "' (" + a["priority"] + ")",
        origin="falco",
    )


def from_correlation(ctx: Context) -> pd.DataFrame:
    """Candidates computed by correlation: exec sessions, host-namespace entry, hidden containers,
    tokens used away from their pod, blind spots."""
    parts = [_exec_sessions(ctx), _host_entries(ctx), _tokens(ctx), _blind(ctx)]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else _cands()


def _exec_sessions(ctx: Context) -> pd.DataFrame:
    s = exec_sessions(ctx)
    if s.empty:
        return _cands()
    lk = ctx.links
    started = lk[lk["kind"] == "exec_session"].set_index("from_event_id")["to_event_id"]
    kids = (
        lk[lk["kind"].isin(["exec_session", "exec_descendant"])]
        .groupby("from_event_id")["to_event_id"]
        .agg(list)
    )
    ids = s["event_id"].map(lambda e: [e, *kids.get(e, [])][:MAX_IDS])
    cont = np.where(s["exec_container"] != "", " (container " + s["exec_container"] + ")", "")
    cmd = s["exec_command"].where(s["exec_command"] != "", "(attach)")
    linked = s["event_id"].isin(started.index)
    summary = (
        s["user"]
        + " ran `"
        + cmd
        + "` in pod "
        + s["namespace"]
        + "/"
        + s["name"]
        + cont
        + " through "
        + s["subresource"]
        + " from "
        + s["source_ip"]
        + np.where(linked, "; Tetragon shows the process it started", "")
    )
    return _cands(
        time=s["time"],
        tactic="Execution",
        techniques=s["event_id"].map(lambda _: ["T1609"]),
        summary=summary,
        namespace=s["namespace"],
        pod=s["name"],
        actor=s["user"],
        process=s["exec_command"].str.split(" ").str[0].fillna(""),
        event_ids=ids,
        severity=2,
        why="audit pods/"
        + s["subresource"]
        + " request"
        + np.where(linked, " linked to the processes it started (exec_session link)", ""),
        origin="exec",
    )


def _host_entries(ctx: Context) -> pd.DataFrame:
    n = ctx.nodes
    e = n[n["entered_host_ns"] & n["observed"] & (n["container_id"] != "") & n["start"].notna()]
    if e.empty:
        return _cands()
    e = e.sort_values("start")
    summary = (
        basename(e["binary"])
        + " "
        + e["args"].str[:80]
        + " in "
        + np.where(e["pod"] != "", e["namespace"] + "/" + e["pod"], "container " + e["container_id"].str[:12])
        + " entered the host namespaces of node "
        + e["node"]
    )
    return _cands(
        time=e["start"],
        tactic="Privilege Escalation",
        techniques=e["exec_id"].map(lambda _: ["T1611"]),
        summary=summary,
        namespace=e["namespace"],
        pod=e["pod"],
        process=e["binary"],
        event_ids=e["event_id"].map(lambda x: [x]),
        severity=3,
        why="process tree: "
        + np.where(
            basename(e["binary"]) == "nsenter",
            "nsenter into PID 1's namespaces",
            "setns/chroot or host mount namespace after a containerised parent",
        ),
        origin="host_ns",
    )


def _tokens(ctx: Context) -> pd.DataFrame:
    u = token_uses(ctx)
    if u.empty:
        return _cands()
    u = u[u["flag"] != ""]
    if u.empty:
        return _cands()
    g = u.sort_values("time").groupby(["token", "source_ip", "flag"], sort=False)
    first = g.head(1).set_index(["token", "source_ip", "flag"])
    ids = g["event_id"].agg(lambda s: list(s)[:MAX_IDS])
    cnt = g.size()
    first = first.assign(ids=ids, n=cnt).reset_index()
    ns = first["user"].str.split(":").str[2].fillna("")
    foreign = first["flag"] == "foreign_ip"
    summary = np.where(
        foreign,
        "The service-account token of pod "
        + ns
        + "/"
        + first["sa_pod_name"]
        + " ("
        + first["user"]
        + ") was used from "
        + first["source_ip"]
        + ", not from its pod, for "
        + first["n"].astype(str)
        + " request(s) starting with "
        + first["verb"]
        + " "
        + first["resource"],
        "The token of "
        + first["user"]
        + ", bound to no pod, was used from a new address "
        + first["source_ip"]
        + " (not its usual client, and no known pod or node held it) for "
        + first["n"].astype(str)
        + " request(s) starting with "
        + first["verb"]
        + " "
        + first["resource"],
    )
    return _cands(
        time=first["time"],
        tactic=np.where(foreign, "Credential Access", "Initial Access"),
        techniques=first["flag"].map(lambda f: ["T1528", "T1078"] if f == "foreign_ip" else ["T1078"]),
        summary=summary,
        namespace=first["namespace"].where(first["namespace"] != "", ns),
        pod=first["sa_pod_name"],
        actor=first["user"],
        dst_ip="",
        src_ip=first["source_ip"],
        event_ids=first["ids"],
        severity=3,
        why="token_use links flagged " + first["flag"],
        origin="token",
    )


def _blind(ctx: Context) -> pd.DataFrame:
    b = blind_spots(ctx)
    if b.empty:
        return _cands()
    kind = b["kind"]
    tactic = kind.map(
        {"unaudited_exec": "Execution", "unowned_pod_ip": "Defense Evasion", "no_api_object": "Persistence"}
    )
    tech = kind.map(
        {"unaudited_exec": ["T1609"], "unowned_pod_ip": ["T1078"], "no_api_object": ["T1543.005"]}
    )
    sev = kind.map({"unaudited_exec": 2, "unowned_pod_ip": 2, "no_api_object": 3})
    summary = (
        kind.map(
            {
                "unaudited_exec": "Blind spot: ",
                "unowned_pod_ip": "Blind spot: ",
                "no_api_object": "Hidden container: ",
            }
        )
        + b["reason"]
    )
    return _cands(
        time=b["time"],
        tactic=tactic,
        techniques=tech,
        summary=summary,
        namespace=b["namespace"],
        pod=b["pod"],
        actor=b["actor"],
        process=b["process"],
        event_ids=b["event_id"].map(lambda e: [e]),
        severity=sev,
        why="blind spot " + kind,
        origin="blind:" + kind,
    )


def label(sev: int) -> str:
    """``high`` for 3, and so on."""
    return LABEL.get(int(sev), "info")
