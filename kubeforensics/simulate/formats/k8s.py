"""Kubernetes core/v1 Events and object dumps (``kubectl get ... -o json``)."""

from __future__ import annotations

from typing import Any

from kubeforensics.simulate.clock import rfc0, rfc6
from kubeforensics.simulate.cluster import Cluster, Node, Pod, ServiceAccount, Workload


def event(*, name: str, uid: str, rv: int, obj_kind: str, obj_ns: str, obj_name: str, obj_uid: str,
          reason: str, message: str, component: str, host: str | None, t_first: int, t_last: int,
          count: int = 1, etype: str = "Normal", field_path: str | None = None,
          event_time: bool = False, action: str = "", api_version: str = "v1") -> dict[str, Any]:
    """A core/v1 Event; ``event_time=True`` gives the events.k8s.io shape (null first/lastTimestamp)."""
    involved: dict[str, Any] = {"kind": obj_kind, "namespace": obj_ns, "name": obj_name, "uid": obj_uid,
                                "apiVersion": api_version, "resourceVersion": str(rv - 3)}
    if field_path:
        involved["fieldPath"] = field_path
    e: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": obj_ns or "default", "uid": uid, "resourceVersion": str(rv),
                     "creationTimestamp": rfc0(t_first)},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
    }
    if event_time:
        e["source"] = {}
        e["firstTimestamp"] = None
        e["lastTimestamp"] = None
        e["type"] = etype
        e["eventTime"] = rfc6(t_first)
        e["action"] = action
        e["reportingComponent"] = component
        e["reportingInstance"] = f"{component}-{host}" if host else component
    else:
        e["source"] = {"component": component, **({"host": host} if host else {})}
        e["firstTimestamp"] = rfc0(t_first)
        e["lastTimestamp"] = rfc0(t_last)
        e["count"] = count
        e["type"] = etype
        e["eventTime"] = None
        e["reportingComponent"] = component if component != "kubelet" else "kubelet"
        e["reportingInstance"] = host or ""
    return e


def _meta(name: str, uid: str, t: int, ns: str | None = None, labels: dict[str, str] | None = None,
          owner: tuple[str, str, str, str] | None = None, rv: int = 1000,
          annotations: dict[str, str] | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name}
    if ns:
        m["namespace"] = ns
    m["uid"] = uid
    m["resourceVersion"] = str(rv)
    m["creationTimestamp"] = rfc0(t)
    if labels:
        m["labels"] = dict(labels)
    if annotations:
        m["annotations"] = dict(annotations)
    if owner:
        api, kind, oname, ouid = owner
        m["ownerReferences"] = [{"apiVersion": api, "kind": kind, "name": oname, "uid": ouid, "controller": True,
                                 "blockOwnerDeletion": True}]
    return m


def container_spec(pod: Pod) -> list[dict[str, Any]]:
    out = []
    for c in pod.containers:
        spec: dict[str, Any] = {"name": c.name, "image": c.image}
        if c.args:
            spec["args"] = c.args.split()
        if c.port:
            spec["ports"] = [{"containerPort": c.port, "protocol": "TCP"}]
        spec["resources"] = {}
        mounts = [{"name": f"kube-api-access-{pod.uid[:5]}", "readOnly": True,
                   "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
        mounts += [{"name": v, "mountPath": p if p != "/" else "/host"} for v, p in pod.host_paths]
        spec["volumeMounts"] = mounts
        spec["terminationMessagePath"] = "/dev/termination-log"
        spec["terminationMessagePolicy"] = "File"
        spec["imagePullPolicy"] = "IfNotPresent"
        if c.privileged:
            spec["securityContext"] = {"privileged": True}
        out.append(spec)
    return out


def pod_spec(pod: Pod) -> dict[str, Any]:
    vols: list[dict[str, Any]] = [{"name": v, "hostPath": {"path": p, "type": ""}} for v, p in pod.host_paths]
    vols.append({"name": f"kube-api-access-{pod.uid[:5]}", "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    ], "defaultMode": 420}})
    spec: dict[str, Any] = {"volumes": vols, "containers": container_spec(pod), "restartPolicy": "Always",
                            "dnsPolicy": "ClusterFirstWithHostNet" if pod.host_network else "ClusterFirst",
                            "serviceAccountName": pod.sa.name, "serviceAccount": pod.sa.name,
                            "nodeName": pod.node.name}
    if pod.host_network:
        spec["hostNetwork"] = True
    if pod.host_pid:
        spec["hostPID"] = True
    spec["securityContext"] = {}
    spec["schedulerName"] = "default-scheduler"
    return spec


def pod_object(pod: Pod, t_now: int) -> dict[str, Any]:
    owner = None
    if pod.owner_kind:
        api = "v1" if pod.owner_kind == "Node" else ("batch/v1" if pod.owner_kind == "Job" else "apps/v1")
        owner = (api, pod.owner_kind, pod.owner_name, pod.owner_uid)
    meta = _meta(pod.name, pod.uid, pod.created_ns, pod.namespace, pod.labels, owner,
                 annotations=pod.annotations or None)
    if pod.owner_kind in ("ReplicaSet", "Job"):
        meta["generateName"] = pod.name.rsplit("-", 1)[0] + "-"
    started = rfc0(pod.created_ns + 2_000_000_000)
    statuses = [{
        "name": c.name, "state": {"running": {"startedAt": rfc0(c.start_ns)}}, "ready": True, "restartCount": 0,
        "image": c.image, "imageID": c.image_id, "containerID": f"containerd://{c.cid}", "started": True,
    } for c in pod.containers]
    return {
        "kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": pod_spec(pod),
        "status": {"phase": "Running", "conditions": [
            {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": started},
            {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": started},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
             "lastTransitionTime": rfc0(pod.created_ns)}],
            "hostIP": pod.node.ip, "podIP": pod.ip, "podIPs": [{"ip": pod.ip}], "startTime": started,
            "containerStatuses": statuses, "qosClass": "BestEffort"},
    }


def node_object(n: Node) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
    if n.role == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
    return {"kind": "Node", "apiVersion": "v1", "metadata": _meta(n.name, n.uid, n.boot_ns, labels=labels),
            "spec": {"podCIDR": n.pod_prefix + "0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}],
                       "nodeInfo": {"kubeletVersion": "v1.30.4", "containerRuntimeVersion": "containerd://1.7.22",
                                    "osImage": "Ubuntu 22.04.4 LTS", "kernelVersion": "6.5.0-1025-aws"}}}


def namespace_object(name: str, uid: str, t: int) -> dict[str, Any]:
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": _meta(name, uid, t, labels={"kubernetes.io/metadata.name": name}),
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def sa_object(sa: ServiceAccount, t: int) -> dict[str, Any]:
    return {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": _meta(sa.name, sa.uid, t, sa.namespace)}


def workload_object(w: Workload, template: Pod | None) -> dict[str, Any]:
    api = "batch/v1" if w.kind in ("CronJob", "Job") else "apps/v1"
    tmpl: dict[str, Any] = {"metadata": {"labels": dict(w.labels)}}
    if template is not None:
        pspec = pod_spec(template)
        pspec.pop("nodeName", None)
        tmpl["spec"] = pspec
    spec: dict[str, Any] = {"selector": {"matchLabels": dict(w.labels)}, "template": tmpl}
    if w.kind in ("Deployment", "StatefulSet"):
        spec = {"replicas": w.replicas, **spec}
    if w.kind == "CronJob":
        spec = {"schedule": w.spec_extra.get("schedule", "*/10 * * * *"),
                "jobTemplate": {"spec": {"template": tmpl}}}
    meta = _meta(w.name, w.uid, w.created_ns, w.namespace, w.labels)
    meta["generation"] = w.generation
    return {"kind": w.kind, "apiVersion": api, "metadata": meta, "spec": spec, "status": {}}


def object_list(cluster: Cluster, t_now: int, extra: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``kind: List`` dump taken at the end of the window (what ``kubectl get ... -o json`` returns)."""
    items: list[dict[str, Any]] = []
    for ns, (uid, t) in cluster.namespaces.items():
        items.append(namespace_object(ns, uid, t))
    items += [node_object(n) for n in cluster.nodes]
    items += [sa_object(sa, sa.created_ns) for sa in cluster.service_accounts.values()]
    for w in cluster.workloads:
        if w.spec_extra.get("deleted"):
            continue
        tmpl = next((p for p in cluster.pods if p.workload is w), None)
        items.append(workload_object(w, tmpl))
    for p in cluster.pods:
        if p.alive(t_now) and (not p.static or p.mirror):
            items.append(pod_object(p, t_now))
    items += cluster.rbac
    items += extra
    return {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": ""}, "items": items}
