"""Hubble flows as ``hubble observe -o jsonpb`` prints them: ``{"flow": ..., "node_name", "time"}`` envelopes."""

from __future__ import annotations

from typing import Any

from kubeforensics.simulate.clock import rfc9
from kubeforensics.simulate.cluster import Pod

WORLD = {"identity": 2, "labels": ["reserved:world"]}
HOST = {"identity": 1, "labels": ["reserved:host"]}
APISERVER = {"identity": 7, "labels": ["reserved:kube-apiserver", "reserved:host"]}
RCODE_TEXT = {0: "", 3: "Non-Existent Domain"}


def endpoint(pod: Pod, cluster_name: str) -> dict[str, Any]:
    """A pod endpoint (hostNetwork pods are ``reserved:host``)."""
    if pod.host_network:
        return HOST
    labels = [f"k8s:{k}={v}" for k, v in sorted(pod.labels.items())]
    labels += [
        f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={pod.namespace}",
        f"k8s:io.cilium.k8s.policy.cluster={cluster_name}",
        f"k8s:io.cilium.k8s.policy.serviceaccount={pod.sa.name}",
        f"k8s:io.kubernetes.pod.namespace={pod.namespace}",
    ]
    return {
        "ID": pod.endpoint_id,
        "identity": pod.identity,
        "cluster_name": cluster_name,
        "namespace": pod.namespace,
        "labels": labels,
        "pod_name": pod.name,
        "workloads": [{"name": pod.workload_name, "kind": pod.workload_kind}],
    }


def flags_summary(flags: dict[str, bool]) -> str:
    return "TCP Flags: " + ", ".join(k for k in ("SYN", "ACK", "FIN", "RST", "PSH") if flags.get(k))


def flow(
    *,
    t: int,
    uuid: str,
    node: str,
    src_ip: str,
    dst_ip: str,
    src: dict[str, Any],
    dst: dict[str, Any],
    proto: str,
    sport: int,
    dport: int,
    flags: dict[str, bool] | None = None,
    verdict: str = "FORWARDED",
    direction: str = "EGRESS",
    is_reply: bool | None = False,
    l7: dict[str, Any] | None = None,
    summary: str = "",
    dst_service: dict[str, str] | None = None,
    dst_names: list[str] | None = None,
    drop_reason: str | None = None,
) -> dict[str, Any]:
    f: dict[str, Any] = {"time": rfc9(t), "uuid": uuid, "verdict": verdict}
    if drop_reason:
        f["drop_reason"] = 133
        f["drop_reason_desc"] = drop_reason
    f["IP"] = {"source": src_ip, "destination": dst_ip, "ipVersion": "IPv4"}
    if proto == "TCP":
        tcp: dict[str, Any] = {"source_port": sport, "destination_port": dport}
        if flags:
            tcp["flags"] = flags
        f["l4"] = {"TCP": tcp}
    else:
        f["l4"] = {"UDP": {"source_port": sport, "destination_port": dport}}
    f["source"] = src
    f["destination"] = dst
    f["Type"] = "L7" if l7 else "L3_L4"
    f["node_name"] = node
    if l7:
        f["l7"] = l7
    if is_reply is not None:
        f["is_reply"] = is_reply
    if verdict == "DROPPED":
        f["event_type"] = {"type": 1, "sub_type": 133}
    elif l7:
        f["event_type"] = {"type": 129}
    else:
        f["event_type"] = {"type": 4, "sub_type": 3 if direction == "EGRESS" else 0}
    if dst_names:
        f["destination_names"] = dst_names
    if direction:
        f["traffic_direction"] = direction
    if not l7 and verdict != "DROPPED":
        f["trace_observation_point"] = "TO_STACK" if direction == "EGRESS" else "TO_ENDPOINT"
    if dst_service:
        f["destination_service"] = dst_service
    f["Summary"] = summary or (flags_summary(flags) if flags else proto)
    return {"flow": f, "node_name": node, "time": f["time"]}


def dns_l7(query: str, qtype: str, *, response: bool, rcode: int = 0, ips: list[str] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"query": query}
    if response and ips:
        d["ips"] = ips
    if response:
        d["ttl"] = 30 if not rcode else 4294967295
    d["observation_source"] = "proxy"
    if response and rcode:
        d["rcode"] = rcode
    d["qtypes"] = [qtype]
    if response and ips:
        d["rrtypes"] = [qtype]
    return {"type": "RESPONSE" if response else "REQUEST", **({"latency_ns": "412881"} if response else {}), "dns": d}


def dns_summary(query: str, qtype: str, *, response: bool, rcode: int = 0, ips: list[str] | None = None) -> str:
    if not response:
        return f"DNS Query {query} {qtype}"
    if rcode:
        return f"DNS Answer RCode: {RCODE_TEXT.get(rcode, rcode)} TTL: 4294967295 (Proxy {query} {qtype})"
    return f"DNS Answer \"{','.join(ips or [])}\" TTL: 30 (Proxy {query} {qtype})"


def http_l7(method: str, url: str, *, code: int | None = None, ua: str = "") -> dict[str, Any]:
    http: dict[str, Any] = {}
    if code is not None:
        http["code"] = code
    http["method"] = method
    http["url"] = url
    http["protocol"] = "HTTP/1.1"
    if ua:
        http["headers"] = [{"key": "User-Agent", "value": ua}]
    out: dict[str, Any] = {"type": "RESPONSE" if code is not None else "REQUEST"}
    if code is not None:
        out["latency_ns"] = "1874021"
    out["http"] = http
    return out


def lost_events(t: int, node: str, lost: int, cpu: int) -> dict[str, Any]:
    return {
        "lost_events": {"source": "PERF_EVENT_RING_BUFFER", "num_events_lost": str(lost), "cpu": cpu},
        "node_name": node,
        "time": rfc9(t),
    }
