"""Realistic, complete Kubernetes objects to seed the API test server (a small shop cluster).

Complete means every field the kubernetes client (v37) requires is present, so the
same objects deserialize into the client's models (tested in test_k8s.py).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from tests.collect.k8s_test_server import FakeCluster

T0 = "2026-03-02T09:00:00Z"
NODES = ["ip-10-0-1-11.eu-west-1.compute.internal", "ip-10-0-1-12.eu-west-1.compute.internal",
         "ip-10-0-1-13.eu-west-1.compute.internal"]
NAMESPACES = ["default", "kube-system", "shop", "payments", "monitoring"]


def uid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


def meta(name: str, ns: str | None = None, labels: dict[str, str] | None = None, t: str = T0,
         owner: tuple[str, str, str] | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "uid": uid(ns or "", name), "creationTimestamp": t}
    if ns:
        m["namespace"] = ns
    if labels:
        m["labels"] = labels
    if owner:
        api, kind, oname = owner
        m["ownerReferences"] = [{"apiVersion": api, "kind": kind, "name": oname, "uid": uid(ns or "", oname),
                                 "controller": True, "blockOwnerDeletion": True}]
    return m


def container(name: str, image: str, privileged: bool = False) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
                         "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                         "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                         "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
    if privileged:
        c["securityContext"] = {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}
    return c


def pod(name: str, ns: str, app: str, node: str, ip: str, image: str, owner: tuple[str, str, str] | None,
        privileged: bool = False, t: str = T0) -> dict[str, Any]:
    cid = hashlib.sha256(f"{ns}/{name}".encode()).hexdigest()
    spec: dict[str, Any] = {"containers": [container(app, image, privileged)], "nodeName": node,
                            "serviceAccountName": "default" if not privileged else "node-debugger",
                            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
                            "terminationGracePeriodSeconds": 30, "securityContext": {}}
    if privileged:
        spec.update(hostPID=True, hostNetwork=True,
                    volumes=[{"name": "host", "hostPath": {"path": "/", "type": ""}}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta(name, ns, {"app": app}, t, owner), "spec": spec,
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.1.11",
                       "startTime": t, "qosClass": "Burstable",
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t}],
                       "containerStatuses": [{"name": app, "image": image, "imageID": f"{image}@sha256:{cid}",
                                              "containerID": f"containerd://{cid}", "ready": True,
                                              "restartCount": 0, "started": True,
                                              "state": {"running": {"startedAt": t}}}]}}


def template(app: str, image: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}}, "spec": {"containers": [container(app, image)],
                                                           "restartPolicy": "Always"}}


def core_event(n: int, ns: str, pod_name: str, reason: str, message: str, t: str = T0) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": meta(f"{pod_name}.{n:016x}", ns, t=t),
            "involvedObject": {"kind": "Pod", "namespace": ns, "name": pod_name, "uid": uid(ns, pod_name),
                               "apiVersion": "v1"},
            "reason": reason, "message": message, "source": {"component": "kubelet", "host": NODES[0]},
            "firstTimestamp": t, "lastTimestamp": t, "count": 1, "type": "Normal", "eventTime": None,
            "reportingComponent": "kubelet", "reportingInstance": NODES[0]}


def new_event(n: int, ns: str, pod_name: str, reason: str, note: str) -> dict[str, Any]:
    return {"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": meta(f"{pod_name}.ev{n:014x}", ns),
            "eventTime": "2026-03-02T09:00:01.123456Z", "reportingController": "default-scheduler",
            "reportingInstance": "default-scheduler-cp-1", "action": "Binding", "reason": reason,
            "regarding": {"kind": "Pod", "namespace": ns, "name": pod_name, "uid": uid(ns, pod_name),
                          "apiVersion": "v1"},
            "note": note, "type": "Normal"}


def seed(cluster: FakeCluster, pods_per_namespace: int = 12) -> dict[str, int]:
    """Fill ``cluster``; returns the number of objects per resource."""
    objs: list[dict[str, Any]] = []
    for ns in NAMESPACES:
        objs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": meta(ns, labels={
            "kubernetes.io/metadata.name": ns}), "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}})
        objs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("default", ns)})
    for n, name in enumerate(NODES):
        objs.append({"apiVersion": "v1", "kind": "Node", "metadata": meta(name, labels={
            "kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": "m6i.large"}),
            "spec": {"providerID": f"aws:///eu-west-1a/i-0{n}abcdef"},
            "status": {"addresses": [{"type": "InternalIP", "address": f"10.0.1.{11 + n}"},
                                     {"type": "Hostname", "address": name}],
                       "nodeInfo": {"architecture": "amd64", "bootID": uid("boot", name),
                                    "containerRuntimeVersion": "containerd://1.7.22", "kernelVersion": "6.1.112",
                                    "kubeProxyVersion": "v1.31.4", "kubeletVersion": "v1.31.4",
                                    "machineID": uid("m", name).replace("-", ""), "operatingSystem": "linux",
                                    "osImage": "Amazon Linux 2023", "systemUUID": uid("s", name)}}})
    objs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("node-debugger", "default")})
    apps = {"shop": ["web", "cart"], "payments": ["api"], "monitoring": ["prometheus"], "kube-system": ["coredns"],
            "default": ["tools"]}
    ip = 10
    ev = 0
    for ns, names in apps.items():
        for app in names:
            image = f"registry.example.com/{ns}/{app}:1.4.2"
            objs.append({"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": meta(app, ns, {"app": app}),
                         "spec": {"replicas": pods_per_namespace // len(names), "selector": {"matchLabels": {"app": app}},
                                  "template": template(app, image)},
                         "status": {"replicas": pods_per_namespace // len(names)}})
            rs = f"{app}-7d9f8c6b5d"
            objs.append({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                         "metadata": meta(rs, ns, {"app": app}, owner=("apps/v1", "Deployment", app)),
                         "spec": {"replicas": pods_per_namespace // len(names),
                                  "selector": {"matchLabels": {"app": app}}, "template": template(app, image)},
                         "status": {"replicas": pods_per_namespace // len(names)}})
            for i in range(pods_per_namespace // len(names)):
                ip += 1
                name = f"{rs}-{i:05d}"
                objs.append(pod(name, ns, app, NODES[i % 3], f"10.244.{ip // 250}.{ip % 250}", image,
                                ("apps/v1", "ReplicaSet", rs)))
                ev += 1
                objs.append(core_event(ev, ns, name, "Started", f"Started container {app}"))
                objs.append(new_event(ev, ns, name, "Scheduled",
                                      f"Successfully assigned {ns}/{name} to {NODES[i % 3]}"))
    objs.append(pod("node-debugger-x7k2p", "default", "debug", NODES[1], "10.0.1.12", "docker.io/library/busybox:1.36",
                    None, privileged=True, t="2026-03-02T10:14:03Z"))
    objs.append({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("node-exporter", "monitoring"),
                 "spec": {"selector": {"matchLabels": {"app": "node-exporter"}},
                          "template": template("node-exporter", "quay.io/prometheus/node-exporter:v1.8.2")}})
    objs.append({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("postgres", "payments"),
                 "spec": {"serviceName": "postgres", "selector": {"matchLabels": {"app": "postgres"}},
                          "template": template("postgres", "docker.io/library/postgres:16.4")}})
    objs.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("db-migrate-28512", "payments"),
                 "spec": {"template": {**template("migrate", "registry.example.com/payments/migrate:3"),
                                       "spec": {"containers": [container("migrate", "registry.example.com/m:3")],
                                                "restartPolicy": "Never"}}}})
    objs.append({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta("backup", "payments"),
                 "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {
                     "spec": {"containers": [container("backup", "registry.example.com/backup:2")],
                              "restartPolicy": "OnFailure"}}}}}})
    objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta("pod-reader", "shop"),
                 "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]})
    objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": meta("read-pods", "shop"),
                 "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "shop"}],
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"}})
    objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta("cluster-admin"),
                 "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})
    objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": meta("debugger-admin", t="2026-03-02T10:15:40Z"),
                 "subjects": [{"kind": "ServiceAccount", "name": "node-debugger", "namespace": "default"}],
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}})
    hook = {"name": "mutate.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": "https://hooks.example.net/mutate"}}
    objs.append({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                 "metadata": meta("sidecar-injector"), "webhooks": [hook]})
    objs.append({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                 "metadata": meta("policy"), "webhooks": [{**hook, "name": "validate.example.com"}]})
    objs.append({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                 "metadata": meta("csr-admin"), "spec": {"request": "LS0tLS1CRUdJTi0tLS0t", "usages": ["client auth"],
                                                         "signerName": "kubernetes.io/kube-apiserver-client"}})
    objs.append({"apiVersion": "v1", "kind": "Secret", "metadata": meta("db-password", "payments"),
                 "type": "Opaque", "data": {"password": "aHVudGVyMg=="}})
    counts: dict[str, int] = {}
    for o in objs:
        cluster.add(o)
        key = f"{o['apiVersion']}/{o['kind']}"
        counts[key] = counts.get(key, 0) + 1
    cluster.logs[("default", "node-debugger-x7k2p")] = (
        b"2026-03-02T10:14:05.000000000Z / # id\n2026-03-02T10:14:05.100000000Z uid=0(root) gid=0(root)\n")
    return counts
