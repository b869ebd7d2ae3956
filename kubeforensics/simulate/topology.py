"""Build the simulated cluster: nodes, namespaces, accounts, workloads and their running pods.

Names, IPs, uids, container ids and the start time all come from the seeded
generator, so different seeds give different clusters of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from kubeforensics.simulate.clock import NS, Ids
from kubeforensics.simulate.cluster import (
    Cluster,
    Container,
    Node,
    Pod,
    Process,
    Service,
    ServiceAccount,
    Workload,
)

CLUSTER_NAMES = ("prod-eu1", "shop-prod", "payments-prd", "retail-live", "core-prod", "web-eu-west")
DAY = 86400 * NS


@dataclass(frozen=True)
class App:
    namespace: str
    name: str
    kind: str
    replicas: int
    sa: str
    image: str
    binary: str
    args: str
    port: int = 0
    privileged: bool = False
    host_network: bool = False
    host_pid: bool = False
    host_paths: tuple[tuple[str, str], ...] = ()
    exec_probe: tuple[str, ...] = ()
    http_probe: int = 0


APPS: tuple[App, ...] = (
    App("kube-system", "coredns", "Deployment", 2, "coredns", "registry.k8s.io/coredns/coredns:v1.11.1",
        "/coredns", "-conf /etc/coredns/Corefile", 53, http_probe=8181),
    App("kube-system", "cilium", "DaemonSet", 0, "cilium", "quay.io/cilium/cilium:v1.16.3",
        "/usr/bin/cilium-agent", "--config-dir=/tmp/cilium/config-map", privileged=True, host_network=True,
        host_paths=(("bpf-maps", "/sys/fs/bpf"), ("cni-path", "/opt/cni/bin"))),
    App("kube-system", "tetragon", "DaemonSet", 0, "tetragon", "quay.io/cilium/tetragon:v1.2.0",
        "/usr/bin/tetragon", "--export-filename=/var/run/cilium/tetragon/tetragon.log --enable-process-ns", privileged=True, host_network=True, host_pid=True,
        host_paths=(("bpf-maps", "/sys/fs/bpf"), ("export-logs", "/var/run/cilium/tetragon"))),
    App("falco", "falco", "DaemonSet", 0, "falco", "docker.io/falcosecurity/falco:0.39.1",
        "/usr/bin/falco", "--cri /run/containerd/containerd.sock -pk", privileged=True,
        host_paths=(("proc-fs", "/proc"), ("etc-fs", "/etc"))),
    App("kube-system", "metrics-server", "Deployment", 1, "metrics-server",
        "registry.k8s.io/metrics-server/metrics-server:v0.7.2", "/metrics-server",
        "--cert-dir=/tmp --secure-port=10250 --kubelet-preferred-address-types=InternalIP", 10250, http_probe=10250),
    App("shop", "frontend", "Deployment", 2, "frontend", "ghcr.io/acme/storefront:2.14.1",
        "/usr/local/bin/gunicorn", "app:app --bind 0.0.0.0:8080 --workers 4", 8080, http_probe=8080),
    App("shop", "checkout-api", "Deployment", 2, "checkout", "ghcr.io/acme/checkout:1.9.3",
        "/usr/local/bin/node", "server.js", 3000, http_probe=3000),
    App("shop", "redis", "StatefulSet", 1, "default", "docker.io/library/redis:7.2.5",
        "/usr/local/bin/redis-server", "*:6379", 6379, exec_probe=("/usr/local/bin/redis-cli", "ping")),
    App("data", "postgres", "StatefulSet", 1, "postgres", "docker.io/library/postgres:16.4",
        "/usr/lib/postgresql/16/bin/postgres", "-c config_file=/etc/postgresql/postgresql.conf", 5432,
        exec_probe=("/usr/bin/pg_isready", "-U postgres -h 127.0.0.1")),
    App("data", "reports", "Deployment", 1, "reports", "ghcr.io/acme/reports:0.8.0",
        "/usr/local/bin/python3", "-m reports.worker"),
    App("monitoring", "prometheus", "StatefulSet", 1, "prometheus", "quay.io/prometheus/prometheus:v2.54.1",
        "/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml", 9090, http_probe=9090),
)
STATIC = (
    ("etcd", "registry.k8s.io/etcd:3.5.15-0", "/usr/local/bin/etcd", "--data-dir=/var/lib/etcd"),
    ("kube-apiserver", "registry.k8s.io/kube-apiserver:v1.30.4", "/usr/local/bin/kube-apiserver",
     "--audit-log-path=/var/log/kubernetes/audit/audit.log --audit-log-maxsize=100"),
    ("kube-controller-manager", "registry.k8s.io/kube-controller-manager:v1.30.4",
     "/usr/local/bin/kube-controller-manager", "--leader-elect=true"),
    ("kube-scheduler", "registry.k8s.io/kube-scheduler:v1.30.4", "/usr/local/bin/kube-scheduler",
     "--leader-elect=true"),
)
NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "falco", "shop", "data", "monitoring", "ci")
L7_NAMESPACES = ("shop",)
SERVICES = (("shop", "frontend", 80, 8080), ("shop", "checkout-api", 80, 3000), ("shop", "redis", 6379, 6379),
            ("data", "postgres", 5432, 5432), ("monitoring", "prometheus", 9090, 9090),
            ("kube-system", "metrics-server", 443, 10250))


def host_process(node: Node, ids: Ids, binary: str, args: str, start: int, parent: Process | None) -> Process:
    return Process(node=node, pid=node.pid(ids), start_ns=start, binary=binary, args=args, cwd="/", uid=0,
                   parent=parent, flags="procFS auid rootcwd", host_ns=True)


def new_container(ids: Ids, name: str, image: str, binary: str, args: str, port: int = 0,
                  privileged: bool = False) -> Container:
    return Container(name=name, image=image, digest=ids.hex(64), cid=ids.container_id(), binary=binary, args=args,
                     port=port, privileged=privileged)


def attach_processes(ids: Ids, pod: Pod, start: int, flags: str = "procFS auid rootcwd") -> None:
    """Give each container its containerd-shim (host) and entrypoint (in the container) processes."""
    node = pod.node
    start = max(start, node.boot_ns + 45 * NS + sum(pod.uid.encode()) % 30 * NS)  # restarted when the node booted
    for c in pod.containers:
        c.start_ns = start
        shim = Process(node=node, pid=node.pid(ids), start_ns=start - 40_000_000, binary="/usr/bin/containerd-shim-runc-v2",
                       args=f"-namespace k8s.io -id {ids.hex(64)} -address /run/containerd/containerd.sock",
                       cwd="/run/containerd/io.containerd.runtime.v2.task/k8s.io/" + c.cid, uid=0,
                       parent=node.procs["containerd"], flags=flags.replace("rootcwd", "").replace("  ", " ").strip())
        c.shim = shim
        c.init = Process(node=node, pid=node.pid(ids), start_ns=start, binary=c.binary, args=c.args, cwd="/",
                         uid=999 if c.name in ("postgres", "redis") else 0, parent=shim, pod=pod, container=c,
                         host_ns=False, flags=flags, cpid=1)


def make_pod(cl: Cluster, ids: Ids, *, ns: str, name: str, node: Node, sa: ServiceAccount, labels: dict[str, str],
             containers: list[Container], created: int, workload: Workload | None = None, owner_kind: str = "",
             owner_name: str = "", owner_uid: str = "", host_network: bool = False, host_pid: bool = False,
             host_paths: list[tuple[str, str]] | None = None) -> Pod:
    pod = Pod(namespace=ns, name=name, uid=ids.uuid(), node=node, ip=node.ip if host_network else node.alloc_ip(),
              sa=sa, labels=labels, containers=containers, created_ns=created, workload=workload,
              owner_kind=owner_kind, owner_name=owner_name, owner_uid=owner_uid, host_network=host_network,
              host_pid=host_pid, host_paths=list(host_paths or []), l7=ns in cl.l7_namespaces)
    cl.next_endpoint += ids.rng.randint(1, 90)
    pod.endpoint_id = cl.next_endpoint
    cl.pods.append(pod)
    return pod


def build_cluster(ids: Ids, workers: int = 3) -> Cluster:
    """A small production cluster with the window [t0, t1] of 62-75 minutes."""
    rng = ids.rng
    day0 = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp()) * NS
    t0 = day0 + rng.randrange(0, 300) * DAY + rng.randrange(6 * 3600, 16 * 3600) * NS + rng.randrange(NS)
    t1 = t0 + rng.randrange(62, 76) * 60 * NS
    cname = rng.choice(CLUSTER_NAMES)
    net = rng.randrange(16, 31)
    pod_net = rng.randrange(0, 4)
    nodes: list[Node] = []
    for i in range(workers + 1):
        role = "control-plane" if i == 0 else "worker"
        ip = f"172.{net}.{rng.randrange(0, 64)}.{rng.randrange(10, 250)}"
        name = f"{cname}-{'cp' if i == 0 else 'worker'}-{ids.suffix(5)}"
        boot = t0 - rng.randrange(3, 40) * DAY - rng.randrange(DAY)
        node = Node(name=name, ip=ip, role=role, uid=ids.uuid(), boot_ns=boot,
                    pod_prefix=f"10.{pod_net}.{i * 16 + rng.randrange(16)}.", next_pid=rng.randrange(900, 3000))
        init = host_process(node, ids, "/usr/lib/systemd/systemd", "--system --deserialize 31", boot + 2 * NS, None)
        init.pid = 1
        node.procs["systemd"] = init
        node.procs["containerd"] = host_process(node, ids, "/usr/bin/containerd", "", boot + 9 * NS, init)
        node.procs["kubelet"] = host_process(
            node, ids, "/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml --container-runtime-endpoint="
            "unix:///run/containerd/containerd.sock", boot + 11 * NS, init)
        node.next_pid = rng.randrange(200_000, 900_000)
        nodes.append(node)
    cluster_created = min(n.boot_ns for n in nodes) - 60 * DAY
    cl = Cluster(name=cname, t0=t0, t1=t1, nodes=nodes,
                 namespaces={ns: (ids.uuid(), cluster_created) for ns in NAMESPACES}, l7_namespaces=L7_NAMESPACES,
                 service_accounts={}, workloads=[], pods=[], services={}, rbac=[])
    for ns in NAMESPACES:
        cl.service_accounts[f"{ns}/default"] = ServiceAccount(ns, "default", ids.uuid(), cluster_created)
    for ctl in ("replicaset-controller", "deployment-controller", "job-controller", "cronjob-controller",
                "endpointslice-controller", "daemon-set-controller", "statefulset-controller", "generic-garbage-collector"):
        cl.service_accounts[f"kube-system/{ctl}"] = ServiceAccount("kube-system", ctl, ids.uuid(), cluster_created)
    cl.service_accounts["ci/deployer"] = ServiceAccount("ci", "deployer", ids.uuid(), cluster_created + 3 * DAY)
    cp = nodes[0]
    for name, image, binary, args in STATIC:
        c = new_container(ids, name, image, binary, args)
        pod = make_pod(cl, ids, ns="kube-system", name=f"{name}-{cp.name}", node=cp,
                       sa=cl.sa("kube-system", "default"), labels={"component": name, "tier": "control-plane"},
                       containers=[c], created=cp.boot_ns + 30 * NS, owner_kind="Node", owner_name=cp.name,
                       owner_uid=cp.uid, host_network=True)
        pod.static = True
        attach_processes(ids, pod, cp.boot_ns + 30 * NS)
    for app in APPS:
        key = f"{app.namespace}/{app.sa}"
        if key not in cl.service_accounts:
            cl.service_accounts[key] = ServiceAccount(app.namespace, app.sa, ids.uuid(), cluster_created + DAY)
        sa = cl.service_accounts[key]
        labels = {"app.kubernetes.io/name": app.name}
        created = t0 - rng.randrange(2, 20) * DAY
        w = Workload(app.kind, app.namespace, app.name, ids.uuid(), labels, sa, created, replicas=app.replicas,
                     spec_extra={"app": app})
        if app.kind == "Deployment":
            w.rs_hash, w.rs_uid = ids.rs_hash(), ids.uuid()
        cl.workloads.append(w)
        first = rng.randrange(len(nodes) - 1)
        hosts = nodes if app.kind == "DaemonSet" else [nodes[1 + (first + i) % (len(nodes) - 1)]
                                                        for i in range(app.replicas)]
        for i, node in enumerate(hosts):
            add_app_pod(cl, ids, app, w, node, i, t0 - rng.randrange(1, 9) * DAY - rng.randrange(DAY))
    for ns, name, port, target in SERVICES:
        cl.services[f"{ns}/{name}"] = Service(ns, name, f"10.96.{rng.randrange(1, 255)}.{rng.randrange(2, 255)}",
                                              port, "TCP", cl.pods_of(ns, name))
    cl.services["kube-system/kube-dns"] = Service("kube-system", "kube-dns", "10.96.0.10", 53, "UDP",
                                                  cl.pods_of("kube-system", "coredns"))
    cl.services["default/kubernetes"] = Service("default", "kubernetes", "10.96.0.1", 443, "TCP", [])
    return cl


def add_app_pod(cl: Cluster, ids: Ids, app: App, w: Workload, node: Node, index: int, created: int,
                flags: str = "procFS auid rootcwd") -> Pod:
    """A pod of ``app`` on ``node`` (names follow the controller's naming)."""
    labels = dict(w.labels)
    if app.kind == "Deployment":
        labels["pod-template-hash"] = w.rs_hash
        name, okind, oname, ouid = f"{w.name}-{w.rs_hash}-{ids.suffix()}", "ReplicaSet", f"{w.name}-{w.rs_hash}", w.rs_uid
    elif app.kind == "StatefulSet":
        name, okind, oname, ouid = f"{w.name}-{index}", "StatefulSet", w.name, w.uid
    else:
        labels["controller-revision-hash"] = w.rs_hash or "6d8b9c7f5"
        name, okind, oname, ouid = f"{w.name}-{ids.suffix()}", app.kind, w.name, w.uid
    c = new_container(ids, app.name, app.image, app.binary, app.args, app.port, app.privileged)
    pod = make_pod(cl, ids, ns=app.namespace, name=name, node=node, sa=w.sa, labels=labels, containers=[c],
                   created=created, workload=w, owner_kind=okind, owner_name=oname, owner_uid=ouid,
                   host_network=app.host_network, host_pid=app.host_pid, host_paths=list(app.host_paths))
    pod.exec_probe = list(app.exec_probe) or None
    pod.http_probe_port = app.http_probe
    pod.identity = identity_for(cl, app.namespace, app.name)
    attach_processes(ids, pod, created + 3 * NS, flags)
    return pod


def identity_for(cl: Cluster, ns: str, app: str) -> int:
    """Cilium security identity: one per label set, stable within a cluster."""
    key = f"{ns}/{app}"
    if key not in cl.identities:
        cl.next_identity += 37
        cl.identities[key] = cl.next_identity
    return cl.identities[key]
