"""Service-account tokens: every request made with each, where it came from, and which uses are suspicious."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kubeforensics.correlate.context import Context
from kubeforensics.correlate.observations import token_key


def token_uses(ctx: Context) -> pd.DataFrame:
    """Audit requests made with service-account tokens, with where they came from and a ``flag``.

    ``flag`` is ``foreign_ip`` when a pod-bound token is used from an IP that
    was not its pod's IP at that moment (nor its node's, for hostNetwork
    pods), ``new_source_ip`` when a token bound to no pod is used from an
    IP that no known pod or node held and that is not the IP of the token's
    first request in the case (its usual client); ``""`` otherwise.
    """
    a = ctx.t["audit"]
    sa = a[a["user"].str.startswith("system:serviceaccount:") & (a["source_ip"] != "")]
    if sa.empty:
        return sa.assign(token="", flag="", resolved_pod="", expected_ip="")
    r = ctx.resolver
    res = r.resolve_ips(sa["source_ip"].reset_index(drop=True), sa["time"].reset_index(drop=True))
    res.index = sa.index
    ns = sa["user"].str.split(":").str[2].fillna("")
    pods = r.pods.set_index(["namespace", "pod"])
    key = pd.MultiIndex.from_arrays([ns, sa["sa_pod_name"]])
    expected_ip = pd.Series(pods["ip"].reindex(key).fillna("").values, index=sa.index) if len(pods) else ""
    bound = sa["sa_pod_name"] != ""
    res_pod = res["namespace"] + "/" + res["pod"]
    own = ns + "/" + sa["sa_pod_name"]
    foreign = bound & (
        ((expected_ip != "") & (sa["source_ip"] != expected_ip))
        | ((res["pod"] != "") & (res_pod != own))
        | ((expected_ip == "") & ~res["matched"])
    )
    tok = token_key(sa)
    first_ip = sa.assign(_tok=tok).sort_values("time").groupby("_tok")["source_ip"].first()
    new_ip = ~bound & ~res["matched"] & (sa["source_ip"] != tok.map(first_ip))
    flag = np.select([foreign, new_ip], ["foreign_ip", "new_source_ip"], "")
    return sa.assign(
        token=tok,
        flag=flag,
        resolved_pod=res_pod.where(res["pod"] != "", ""),
        expected_ip=expected_ip,
    )
