"""Context that caps a candidate's severity: look-alikes that must not be called attacks without more.

Two caps, each recorded in the candidate's ``why`` so the analyst sees it:

* **container-runtime plumbing** -- when every process behind a candidate is the
  container runtime itself (``runc``, ``containerd-shim``, ``conmon``, ``crun``),
  the candidate is capped at *low*: the runtime enters namespaces and runs on
  the host by design.
* **known node agents** -- a candidate about a host process (no pod) of a
  known node agent (``amazon-ssm-agent``, the GCE/Azure guest agents,
  ``kubelet``, ``containerd``, ...) is capped at *low*: these read
  credentials files and enter namespaces as their job.  Extend
  :data:`NODE_AGENTS` for your fleet.
* **kubectl debug node** -- a pod named ``node-debugger-<node>-<suffix>`` with
  the host's ``/`` mounted, created by a person (not a service account) with
  kubectl, exists to give host access; what happens inside it is capped at
  *medium*.  It stays in the story, with its actor, for review.
"""

from __future__ import annotations

import pandas as pd

from kubeforensics.correlate.context import Context
from kubeforensics.correlate.frames import as_list, is_runtime

RUNTIME_CAP = 1
AGENT_CAP = 1
NODE_AGENTS = frozenset(
    [
        "amazon-ssm-agent",
        "ssm-agent-worker",
        "ssm-session-worker",
        "google_guest_agent",
        "google_osconfig_agent",
        "waagent",
        "WALinuxAgent",
        "kubelet",
        "containerd",
        "dockerd",
        "crio",
        "systemd",
        "systemd-journald",
        "systemd-logind",
    ]
)
DEBUG_NODE_CAP = 2


def debug_node_pods(ctx: Context) -> pd.Series:
    """``namespace/pod`` -> user for pods created by ``kubectl debug node/...``."""
    a = ctx.t["audit"]
    c = a[
        (a["resource"] == "pods")
        & (a["subresource"] == "")
        & (a["verb"] == "create")
        & a["name"].str.startswith("node-debugger-")
        & ~a["user"].str.startswith("system:")
        & a["user_agent"].str.startswith("kubectl/")
        & (a["code"].isna() | (a["code"] < 300))
    ]
    c = c[c["pod_host_paths"].map(lambda p: "/" in as_list(p)).astype(bool)]
    return pd.Series(c["user"].values, index=(c["namespace"] + "/" + c["name"]).values, dtype=object)


def apply_caps(ctx: Context, cand: pd.DataFrame, ex: pd.DataFrame) -> pd.DataFrame:
    """Cap severities (see module docstring); ``ex`` maps candidate index -> evidence rows."""
    cand = cand.copy()
    procs = ex[ex["exec_id"] != ""]
    if not procs.empty:
        runtime = is_runtime(procs["process"])
        only = runtime.groupby(procs["index"]).all()
        only = only[only].index
        hit = cand.index.isin(only) & (cand["severity"] > RUNTIME_CAP)
        cand.loc[hit, "severity"] = RUNTIME_CAP
        cand.loc[hit, "why"] = (
            cand.loc[hit, "why"] + "; capped at low: its processes are the container runtime only"
        )
    agent = (cand["pod"] == "") & cand["process"].str.rsplit("/", n=1).str[-1].isin(NODE_AGENTS)
    hit = agent & (cand["severity"] > AGENT_CAP)
    cand.loc[hit, "severity"] = AGENT_CAP
    cand.loc[hit, "why"] = cand.loc[hit, "why"] + "; capped at low: a known node agent on the host"
    dbg = debug_node_pods(ctx)
    if not dbg.empty:
        key = cand["namespace"] + "/" + cand["pod"]
        hit = key.isin(dbg.index) & (cand["severity"] > DEBUG_NODE_CAP)
        cand.loc[hit, "severity"] = DEBUG_NODE_CAP
        cand.loc[hit, "why"] = (
            cand.loc[hit, "why"]
            + "; capped at medium: kubectl debug node session of "
            + key[hit].map(dbg)
            + " (host access is its purpose)"
        )
    return cand
