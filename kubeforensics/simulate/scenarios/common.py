"""Building blocks shared by the attack scenarios (an exec session, a pod created by a user, ...)."""

from __future__ import annotations

from typing import Any

from kubeforensics.simulate.clock import NS
from kubeforensics.simulate.cluster import Container, Pod, Process
from kubeforensics.simulate.dataset import MS, Dataset
from kubeforensics.simulate.formats import audit as fa
from kubeforensics.simulate.formats import falco as ff
from kubeforensics.simulate.formats import k8s as fk

SHELL_TAGS = ["container", "shell", "process", "mitre_execution", "T1059"]


def public_ip(ds: Dataset) -> str:
    r = ds.rng
    return f"{r.choice((5, 45, 62, 91, 103, 139, 146, 178, 185, 193, 212))}.{r.randrange(1, 255)}.{r.randrange(256)}." \
           f"{r.randrange(2, 254)}"


def kubectl(ds: Dataset) -> tuple[bool, str]:
    """Which kubectl the actor uses: (new >= 1.30 logs exec as ``get``, user agent)."""
    new = ds.rng.random() < 0.5
    return new, fa.UA_KUBECTL_NEW if new else fa.UA_KUBECTL_OLD


def exec_session(ds: Dataset, t: int, *, user: dict[str, Any], ip: str, new_kubectl: bool, ua: str, pod: Pod,
                 command: list[str], authz: str, duration: int, tty: bool = True,
                 container: Container | None = None) -> tuple[str, Process, Process]:
    """``kubectl exec [-it] POD -- command``: the audit record(s), runc and the command's process."""
    c = container or pod.containers[0]
    uri = fa.exec_uri(pod.namespace, pod.name, c.name, command)
    if not tty:
        uri = uri.replace("&stdin=true&stdout=true&tty=true", "&stderr=true&stdout=true")
    end = t + duration
    aid = ds.api(t, user=user, verb="get" if new_kubectl else "create", uri=uri, ip=ip, ua=ua, code=101,
                 ref=fa.ref("pods", pod.namespace, pod.name, subresource="exec"), authz=authz,
                 streaming_until=end, received_stage=True)
    runc = ds.runc_exec(t + ds.rng.randrange(30, 80) * MS, pod, c)
    binary = command[0] if command[0].startswith("/") else f"/bin/{command[0]}"
    proc = ds.in_container(runc.start_ns + ds.rng.randrange(5, 15) * MS, runc, pod, binary, " ".join(command[1:]),
                           container=c)
    if tty and proc.name in ("bash", "sh"):
        ds.falco_proc(proc.start_ns + 2 * MS, "Terminal shell in container", "Notice",
                      "A shell was spawned in a container with an attached terminal", proc, SHELL_TAGS)
    return aid, runc, proc


def user_creates_pod(ds: Dataset, t: int, pod: Pod, *, user: dict[str, Any], ip: str, ua: str, authz: str) -> str:
    req: dict[str, Any] = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": pod.name, "namespace": pod.namespace,
                                                           "creationTimestamp": None}, "spec": fk.pod_spec(pod)}
    req["spec"].pop("nodeName", None)
    return ds.api(t, user=user, verb="create", uri=f"/api/v1/namespaces/{pod.namespace}/pods?fieldManager=kubectl-create"
                  f"&fieldValidation=Strict", ip=ip, ua=ua, code=201, level="RequestResponse",
                  ref=fa.ref("pods", pod.namespace, pod.name), req=req, resp=fk.pod_object(pod, t), authz=authz,
                  received_stage=True)


def audit_alert(ds: Dataset, t: int, rule: str, priority: str, text: str, *, user: str, verb: str, resource: str,
                ns: str | None, name: str | None, code: int, uri: str, tags: list[str]) -> str:
    return ds.falco_audit(t, rule, priority, text, ff.audit_fields(t, user=user, verb=verb, resource=resource, ns=ns,
                                                                   name=name, code=code, uri=uri), tags)


def beacon(ds: Dataset, start: int, end: int, proc: Process, ip: str, port: int, period_s: int,
           names: list[str] | None = None) -> int:
    """Periodic connections from ``proc`` to ``ip:port`` until ``end``; returns how many."""
    n = 0
    t = start
    while t < end:
        ds.connect(t, proc, ip, port, names=names)
        n += 1
        t += int(period_s * NS * ds.rng.uniform(0.9, 1.1))
    return n
