"""Falco JSON alerts (``json_output: true``), one object per line."""

from __future__ import annotations

from typing import Any

from kubeforensics.simulate.clock import falco_prefix, rfc9
from kubeforensics.simulate.cluster import Process


def alert(t: int, *, rule: str, priority: str, source: str, hostname: str, message: str,
          fields: dict[str, Any], tags: list[str]) -> dict[str, Any]:
    """One alert; ``message`` is the rendered rule output without the time prefix."""
    return {
        "hostname": hostname,
        "output": f"{falco_prefix(t)}: {priority} {message}",
        "priority": priority,
        "rule": rule,
        "source": source,
        "tags": tags,
        "time": rfc9(t),
        "output_fields": fields,
    }


def proc_fields(p: Process, t: int, evt_type: str = "execve") -> dict[str, Any]:
    """The output fields of a syscall rule for process ``p`` (null where Falco has no value)."""
    c, pod = p.container, p.pod
    cid = c.cid[:12] if c else (p.hidden_docker[:12] if p.hidden_docker else "host")
    return {
        "container.id": cid,
        "container.image.repository": c.repository if c else None,
        "container.image.tag": c.image.rsplit(":", 1)[-1] if c else None,
        "container.name": c.name if c else ("host" if not p.hidden_docker else None),
        "evt.time": t,
        "evt.type": evt_type,
        "k8s.ns.name": pod.namespace if pod else None,
        "k8s.pod.name": pod.name if pod else None,
        "proc.cmdline": p.cmdline,
        "proc.exepath": p.binary,
        "proc.name": p.name,
        "proc.pname": p.parent.name if p.parent else None,
        "proc.tty": 34816 if p.name in ("bash", "sh") else 0,
        "user.loginuid": -1,
        "user.name": "root" if p.uid == 0 else None,
        "user.uid": p.uid,
    }


def proc_message(text: str, f: dict[str, Any]) -> str:
    return (
        f"{text} (evt_type={f['evt.type']} user={f['user.name']} user_uid={f['user.uid']} "
        f"user_loginuid={f['user.loginuid']} process={f['proc.name']} proc_exepath={f['proc.exepath']} "
        f"parent={f['proc.pname']} command={f['proc.cmdline']} terminal={f['proc.tty']} "
        f"container_id={f['container.id']} container_image={f['container.image.repository']} "
        f"container_image_tag={f['container.image.tag']} container_name={f['container.name']} "
        f"k8s_ns={f['k8s.ns.name']} k8s_pod_name={f['k8s.pod.name']})"
    )


def audit_fields(t: int, *, user: str, verb: str, resource: str, ns: str | None, name: str | None,
                 uri: str, code: int) -> dict[str, Any]:
    return {
        "evt.time": t,
        "ka.auth.decision": "allow" if code < 400 else "forbid",
        "ka.response.code": str(code),
        "ka.target.name": name,
        "ka.target.namespace": ns,
        "ka.target.resource": resource,
        "ka.uri": uri,
        "ka.user.name": user,
        "ka.verb": verb,
    }
