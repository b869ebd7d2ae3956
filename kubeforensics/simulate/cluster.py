"""The cluster model: one set of nodes, pods, containers and accounts behind every source.

Every identifier a source writes (pod uid, IP, node, container id, service
account, process ``exec_id``) comes from these objects, so all sources agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubeforensics.simulate.clock import NS, Ids, exec_id

K8S_VERSION = "v1.30.4"
K8S_COMMIT = "a51b3b7"


@dataclass
class Node:
    name: str
    ip: str
    role: str  # control-plane | worker
    uid: str
    boot_ns: int
    pod_prefix: str  # "10.244.3." pods get .2-.250
    next_pid: int
    next_ip: int = 10
    procs: dict[str, Process] = field(default_factory=dict)  # well-known host processes

    def pid(self, ids: Ids) -> int:
        self.next_pid += ids.rng.randint(1, 40)
        return self.next_pid

    def alloc_ip(self) -> str:
        self.next_ip += 1
        return f"{self.pod_prefix}{self.next_ip}"


@dataclass
class ServiceAccount:
    namespace: str
    name: str
    uid: str
    created_ns: int = 0

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


@dataclass
class Container:
    name: str
    image: str  # repository:tag
    digest: str  # sha256 hex
    cid: str  # 64 hex
    binary: str
    args: str
    start_ns: int = 0
    privileged: bool = False
    port: int = 0
    shim: Process | None = None
    init: Process | None = None

    @property
    def repository(self) -> str:
        return self.image.rsplit(":", 1)[0]

    @property
    def image_id(self) -> str:
        return f"{self.repository}@sha256:{self.digest}"


@dataclass
class Workload:
    kind: str  # Deployment | DaemonSet | StatefulSet | CronJob | Job
    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    sa: ServiceAccount
    created_ns: int
    replicas: int = 1
    rs_hash: str = ""  # current ReplicaSet hash (Deployments)
    rs_uid: str = ""
    generation: int = 1
    spec_extra: dict[str, Any] = field(default_factory=dict)  # hostPID, privileged, images...


@dataclass
class Pod:
    namespace: str
    name: str
    uid: str
    node: Node
    ip: str
    sa: ServiceAccount
    labels: dict[str, str]
    containers: list[Container]
    created_ns: int
    workload: Workload | None = None
    owner_kind: str = ""  # ReplicaSet, DaemonSet, StatefulSet, Job, Node
    owner_name: str = ""
    owner_uid: str = ""
    host_network: bool = False
    host_pid: bool = False
    host_paths: list[tuple[str, str]] = field(default_factory=list)  # (volume name, path)
    deleted_ns: int | None = None
    static: bool = False  # a static pod: no API object unless a mirror pod exists
    mirror: bool = True  # static pods: does the API server hold a mirror pod?
    endpoint_id: int = 0
    identity: int = 0
    l7: bool = False  # Hubble L7 visibility in its namespace
    annotations: dict[str, str] = field(default_factory=dict)
    exec_probe: list[str] | None = None
    http_probe_port: int = 0

    @property
    def workload_name(self) -> str:
        return self.workload.name if self.workload else self.name

    @property
    def workload_kind(self) -> str:
        return self.workload.kind if self.workload else "Pod"

    def alive(self, t: int) -> bool:
        return self.created_ns <= t and (self.deleted_ns is None or t < self.deleted_ns)


@dataclass
class Process:
    """One process as Tetragon sees it (``exec_id`` unique per process)."""

    node: Node
    pid: int
    start_ns: int
    binary: str
    args: str
    cwd: str
    uid: int
    parent: Process | None
    pod: Pod | None = None
    container: Container | None = None
    host_ns: bool = True  # all namespaces are the host's (host processes, or after nsenter)
    flags: str = "execve clone"
    cpid: int = 0  # pid inside the container's pid namespace
    exec_probe: bool = False
    hidden_docker: str | None = None  # a container with no pod block (static pod in a missing namespace)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def exec_id(self) -> str:
        e = self.cache.get("exec_id")
        if e is None:
            e = exec_id(self.node.name, self.start_ns - self.node.boot_ns, self.pid)
            self.cache["exec_id"] = e
        return e

    @property
    def name(self) -> str:
        return self.binary.rsplit("/", 1)[-1]

    @property
    def cmdline(self) -> str:
        return f"{self.name} {self.args}".strip()


@dataclass
class Service:
    namespace: str
    name: str
    cluster_ip: str
    port: int
    protocol: str
    pods: list[Pod]


@dataclass
class Cluster:
    name: str
    t0: int
    t1: int
    nodes: list[Node]
    namespaces: dict[str, tuple[str, int]]  # name -> (uid, created_ns)
    l7_namespaces: tuple[str, ...]
    service_accounts: dict[str, ServiceAccount]  # "ns/name"
    workloads: list[Workload]
    pods: list[Pod]
    services: dict[str, Service]  # "ns/name"
    rbac: list[dict[str, Any]]  # Role/ClusterRole/Binding objects (already in k8s form)
    extra_objects: list[dict[str, Any]] = field(default_factory=list)
    identities: dict[str, int] = field(default_factory=dict)
    next_identity: int = 20000
    next_endpoint: int = 100

    @property
    def control_plane(self) -> Node:
        return self.nodes[0]

    @property
    def workers(self) -> list[Node]:
        return self.nodes[1:]

    def sa(self, ns: str, name: str) -> ServiceAccount:
        return self.service_accounts[f"{ns}/{name}"]

    def pods_of(self, ns: str, prefix: str, t: int | None = None) -> list[Pod]:
        return [
            p for p in self.pods
            if p.namespace == ns and p.name.startswith(prefix) and (t is None or p.alive(t))
        ]

    def pod_by_ip(self, ip: str, t: int) -> Pod | None:
        for p in self.pods:
            if p.ip == ip and p.alive(t) and not p.host_network:
                return p
        return None

    @property
    def apiserver_ip(self) -> str:
        return self.control_plane.ip

    def uptime_s(self, node: Node, t: int) -> int:
        return (t - node.boot_ns) // NS
