"""Benign activity that resembles attacks: CI deploys, an SRE's exec, ``kubectl debug``, privileged agents.

Each look-alike is recorded in the ground truth (``benign_lookalikes``) with the
records that show it, so detections can be checked for false positives.
"""

from __future__ import annotations

from typing import Any

from kubeforensics.simulate.clock import NS
from kubeforensics.simulate.cluster import Pod, Workload
from kubeforensics.simulate.dataset import MS, Dataset
from kubeforensics.simulate.formats import audit as fa
from kubeforensics.simulate.formats import falco as ff
from kubeforensics.simulate.formats import k8s as fk
from kubeforensics.simulate.topology import add_app_pod

SRE = ("alice@acme.example", ["sre", "oidc:platform"])
SRE_IP = "192.0.2.{}"
CI_RUNNER_IP = "198.51.100.{}"
CLUSTER_ADMIN_SRE = 'RBAC: allowed by ClusterRoleBinding "platform-sre" of ClusterRole "cluster-admin" to Group "sre"'


def sre_ip(ds: Dataset) -> str:
    return SRE_IP.format(10 + ds.cl.t0 % 200)


def ci_ip(ds: Dataset) -> str:
    return CI_RUNNER_IP.format(20 + ds.cl.t0 % 180)


def ci_deploy(ds: Dataset, t: int, w: Workload, jti: str) -> None:
    """The CI service account patches a Deployment: a new ReplicaSet rolls the pods."""
    cl, rng = ds.cl, ds.rng
    app = w.spec_extra["app"]
    old = [p for p in cl.pods if p.workload is w and p.alive(t)]
    tag = f"{app.image.rsplit(':', 1)[0]}:{app.image.rsplit(':', 1)[1]}-{rng.randrange(100, 999)}"
    ds.truth.lookalike(t, f"CI deploy of {w.namespace}/{w.name} by the ci/deployer service account",
                       namespace=w.namespace, user=cl.sa("ci", "deployer").username, ip=ci_ip(ds))
    ds.api(t, user=fa.sa_user(cl.sa("ci", "deployer"), None, jti), verb="patch", ip=ci_ip(ds),
           ua="kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819", level="RequestResponse",
           uri=f"/apis/apps/v1/namespaces/{w.namespace}/deployments/{w.name}?fieldManager=kubectl-set",
           ref=fa.ref("deployments", w.namespace, w.name, api_group="apps", uid=w.uid),
           req={"spec": {"template": {"spec": {"containers": [{"name": app.name, "image": tag}]}}}},
           resp={"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": w.name, "namespace": w.namespace,
                                                                              "uid": w.uid}},
           authz='RBAC: allowed by RoleBinding "deployer" of ClusterRole "edit" to ServiceAccount "deployer/ci"')
    w.generation += 1
    w.rs_hash, w.rs_uid = ds.ids.rs_hash(), ds.ids.uuid()
    dep_sa, rs_sa = cl.sa("kube-system", "deployment-controller"), cl.sa("kube-system", "replicaset-controller")
    t1 = t + rng.randrange(20, 90) * MS
    ds.api(t1, user=fa.sa_user(dep_sa), verb="create", ip=cl.control_plane.ip, code=201, ua=fa.UA_KCM,
           uri=f"/apis/apps/v1/namespaces/{w.namespace}/replicasets",
           ref=fa.ref("replicasets", w.namespace, f"{w.name}-{w.rs_hash}", api_group="apps"))
    ds.event(t1, "Deployment", w.namespace, w.name, w.uid, "ScalingReplicaSet",
             f"Scaled up replica set {w.name}-{w.rs_hash} to 1", component="deployment-controller",
             api_version="apps/v1")
    tt = t1
    for i, old_pod in enumerate(old):
        tt += rng.randrange(50, 300) * MS
        pod = add_app_pod(cl, ds.ids, app, w, old_pod.node, i, tt, flags="execve rootcwd clone")
        for target in cl.services.values():
            if old_pod in target.pods:
                target.pods.append(pod)
        ds.api(tt, user=fa.sa_user(rs_sa), verb="create", ip=cl.control_plane.ip, code=201, ua=fa.UA_KCM,
               uri=f"/api/v1/namespaces/{w.namespace}/pods", ref=fa.ref("pods", w.namespace, pod.name))
        ds.event(tt, "ReplicaSet", w.namespace, f"{w.name}-{w.rs_hash}", w.rs_uid, "SuccessfulCreate",
                 f"Created pod: {pod.name}", component="replicaset-controller", api_version="apps/v1")
        tt = ds.start_pod(tt, pod) + rng.randrange(2, 6) * NS
        ds.event(tt, "Deployment", w.namespace, w.name, w.uid, "ScalingReplicaSet",
                 f"Scaled down replica set {old_pod.owner_name} to {len(old) - i - 1} from {len(old) - i}",
                 component="deployment-controller", api_version="apps/v1")
        ds.api(tt + 5 * MS, user=fa.sa_user(rs_sa), verb="delete", ip=cl.control_plane.ip, ua=fa.UA_KCM,
               uri=f"/api/v1/namespaces/{w.namespace}/pods/{old_pod.name}",
               ref=fa.ref("pods", w.namespace, old_pod.name))
        ds.event(tt + 5 * MS, "ReplicaSet", w.namespace, old_pod.owner_name, old_pod.owner_uid, "SuccessfulDelete",
                 f"Deleted pod: {old_pod.name}", component="replicaset-controller", api_version="apps/v1")
        ds.kill_pod(tt + 40 * MS, old_pod)
        for target in cl.services.values():
            if old_pod in target.pods:
                target.pods.remove(old_pod)
    ds.truth.end()


def sre_exec(ds: Dataset, t: int, pod: Pod) -> None:
    """An SRE debugs a pod with ``kubectl exec -it`` (older kubectl: verb create)."""
    user = fa.human_user(*SRE)
    c = pod.containers[0]
    ds.truth.lookalike(t, f"SRE {SRE[0]} runs a shell in {pod.namespace}/{pod.name} to debug",
                       namespace=pod.namespace, pod=pod.name, user=SRE[0], ip=sre_ip(ds), process="/bin/sh")
    end = t + ds.rng.randrange(90, 300) * NS
    ds.api(t, user=user, verb="create", uri=fa.exec_uri(pod.namespace, pod.name, c.name, ["sh"]), ip=sre_ip(ds),
           ref=fa.ref("pods", pod.namespace, pod.name, subresource="exec"), ua=fa.UA_KUBECTL_OLD, code=101,
           authz=CLUSTER_ADMIN_SRE, streaming_until=end)
    runc = ds.runc_exec(t + 40 * MS, pod)
    sh = ds.in_container(t + 50 * MS, runc, pod, "/bin/sh")
    ds.falco_proc(t + 52 * MS, "Terminal shell in container", "Notice",
                  "A shell was spawned in a container with an attached terminal", sh,
                  ["container", "shell", "process", "mitre_execution", "T1059"])
    tt = t + ds.rng.randrange(5, 20) * NS
    for binary, args in (("/bin/ps", "aux"), ("/usr/bin/wget", f"-qO- http://127.0.0.1:{c.port or 8080}/healthz"),
                         ("/usr/bin/env", "")):
        p = ds.spawn(tt, sh, binary, args, exit_after=ds.rng.randrange(5, 200) * MS)
        if binary.endswith("wget"):
            ds.connect(tt + 2 * MS, p, "127.0.0.1", c.port or 8080, reply=False)
        tt += ds.rng.randrange(4, 30) * NS
    ds.exit(sh, end - 30 * MS)
    ds.exit(runc, end - 10 * MS)
    ds.truth.end()


def debug_node(ds: Dataset, t: int) -> None:
    """``kubectl debug node/...``: hostPID, hostNetwork, the host's / mounted, then deleted."""
    cl, rng = ds.cl, ds.rng
    node = cl.workers[-1]
    name = f"node-debugger-{node.name}-{ds.ids.suffix()}"
    ds.truth.lookalike(t, f"SRE {SRE[0]} debugs node {node.name} with kubectl debug (hostPID, host / mounted)",
                       namespace="default", pod=name, user=SRE[0], ip=sre_ip(ds), node=node.name)
    from kubeforensics.simulate.topology import make_pod, new_container

    c = new_container(ds.ids, "debugger", "docker.io/library/busybox:1.36", "/bin/sh", "")
    pod = make_pod(cl, ds.ids, ns="default", name=name, node=node, sa=cl.sa("default", "default"), labels={},
                   containers=[c], created=t, host_network=True, host_pid=True, host_paths=[("host-root", "/")])
    spec = fk.pod_spec(pod)
    ds.api(t, user=fa.human_user(*SRE), verb="create", uri="/api/v1/namespaces/default/pods", ip=sre_ip(ds),
           ref=fa.ref("pods", "default", name), ua=fa.UA_KUBECTL_NEW, code=201, level="RequestResponse",
           req={"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": "default"}, "spec": spec},
           resp=fk.pod_object(pod, t), authz=CLUSTER_ADMIN_SRE, received_stage=True)
    ds.falco_audit(t + 30 * MS, "Create HostNetwork Pod", "Warning",
                   "Pod started using host network", fa_fields(t, SRE[0], "create", "pods", "default", name, 201),
                   ["k8s"])
    ts = ds.start_pod(t, pod)
    end = ts + rng.randrange(120, 400) * NS
    ds.api(ts + 300 * MS, user=fa.human_user(*SRE), verb="get", ip=sre_ip(ds), ua=fa.UA_KUBECTL_NEW, code=101,
           uri=f"/api/v1/namespaces/default/pods/{name}/attach?container=debugger&stdin=true&stdout=true&tty=true",
           ref=fa.ref("pods", "default", name, subresource="attach"), authz=CLUSTER_ADMIN_SRE, streaming_until=end)
    sh = c.init
    assert sh is not None
    tt = ts + 5 * NS
    for binary, args in (("/bin/chroot", "/host"), ("/usr/bin/journalctl", "-u kubelet --since -1h"),
                         ("/usr/bin/crictl", "ps")):
        ds.spawn(tt, sh, binary, args, exit_after=rng.randrange(20, 3000) * MS)
        tt += rng.randrange(10, 60) * NS
    ds.api(end + 2 * NS, user=fa.human_user(*SRE), verb="delete", uri=f"/api/v1/namespaces/default/pods/{name}",
           ip=sre_ip(ds), ref=fa.ref("pods", "default", name), ua=fa.UA_KUBECTL_NEW, authz=CLUSTER_ADMIN_SRE)
    ds.kill_pod(end + 2 * NS + 100 * MS, pod, 0)
    ds.truth.end()


def ephemeral(ds: Dataset, t: int, pod: Pod) -> None:
    """``kubectl debug -it POD --image=busybox --target=...``: an ephemeral container."""
    ds.truth.lookalike(t, f"SRE adds an ephemeral debug container to {pod.namespace}/{pod.name}",
                       namespace=pod.namespace, pod=pod.name, user=SRE[0], ip=sre_ip(ds))
    ds.api(t, user=fa.human_user(*SRE), verb="patch", ip=sre_ip(ds), ua=fa.UA_KUBECTL_NEW,
           uri=f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/ephemeralcontainers",
           ref=fa.ref("pods", pod.namespace, pod.name, subresource="ephemeralcontainers", uid=pod.uid),
           authz=CLUSTER_ADMIN_SRE, received_stage=True)
    fp = "spec.ephemeralContainers{debugger-" + ds.ids.suffix() + "}"
    pulled = 'Container image "docker.io/library/busybox:1.36" already present on machine'
    for i, (reason, msg) in enumerate((("Pulled", pulled), ("Created", "Created container debugger"),
                                       ("Started", "Started container debugger"))):
        ds.event(t + (i + 1) * 200 * MS, "Pod", pod.namespace, pod.name, pod.uid, reason, msg, host=pod.node.name,
                 field_path=fp)
    ds.truth.end()


def privileged_agents(ds: Dataset) -> None:
    """The CNI and security-agent DaemonSets are privileged by design (objects only)."""
    s = ds.truth.lookalike(ds.cl.t0, "Privileged, hostNetwork/hostPID DaemonSets of the CNI (cilium) and security "
                           "agents (tetragon, falco)", namespace="kube-system")
    for w in ds.cl.workloads:
        if w.kind == "DaemonSet":
            s.add("k8s-objects", f"DaemonSet/{w.namespace}/{w.name}")
    ds.truth.end()


def nightly_export(ds: Dataset) -> None:
    """A benign CronJob (data/reports-export every 15 minutes): Jobs, pods, Events, psql to postgres."""
    from kubeforensics.simulate.cronjobs import cron_run
    from kubeforensics.simulate.topology import App

    cl = ds.cl
    sa = cl.sa("data", "reports")
    app = App("data", "reports-export", "Job", 1, "reports", "ghcr.io/acme/reports:0.8.0", "/usr/local/bin/python3",
              "-m reports.export --since 15m")
    w = Workload("CronJob", "data", "reports-export", ds.ids.uuid(), {"app.kubernetes.io/name": "reports-export"}, sa,
                 cl.t0 - 30 * 86400 * NS, spec_extra={"app": app, "schedule": "*/15 * * * *"})
    cl.workloads.append(w)
    db = cl.pods_of("data", "postgres")[0]

    def work(main: Any, start: int) -> None:
        pod = main.pod
        ds.dns(start + 300 * MS, pod, "postgres")
        ds.connect(start + 310 * MS, main, db.ip, 5432, service=("data", "postgres"))

    first = (cl.t0 // (900 * NS) + 1) * 900 * NS
    for t in range(first, cl.t1 - 60 * NS, 900 * NS):
        cron_run(ds, t, w, app, work, duration=ds.rng.randrange(4, 20) * NS)


def fa_fields(t: int, user: str, verb: str, resource: str, ns: str | None, name: str | None, code: int,
              uri: str | None = None) -> dict[str, Any]:
    return ff.audit_fields(t, user=user, verb=verb, resource=resource, ns=ns, name=name, code=code,
                           uri=uri or f"/api/v1/namespaces/{ns}/{resource}" + (f"/{name}" if name and verb != "create" else ""))


def generate(ds: Dataset, pinned: tuple[str, ...] = ()) -> str:
    """All look-alikes, spread over the window; returns the CI credential id (JTI) used by deploys."""
    cl, rng = ds.cl, ds.rng
    jti = ds.ci_jti
    span = cl.t1 - cl.t0
    deployable = [w for w in cl.workloads if w.kind == "Deployment" and w.namespace == "shop" and w.name not in pinned]
    for i, frac in enumerate((0.12, 0.55, 0.83)):
        if deployable:
            ci_deploy(ds, cl.t0 + int(span * frac) + rng.randrange(60) * NS, deployable[i % len(deployable)], jti)
    t = cl.t0 + int(span * 0.3)
    target = next((p for p in cl.pods_of("shop", "redis", t)), None)
    if target:
        sre_exec(ds, t, target)
    debug_node(ds, cl.t0 + int(span * 0.2))
    eph = cl.pods_of("monitoring", "prometheus", cl.t0)
    if eph:
        ephemeral(ds, cl.t0 + int(span * 0.66), eph[0])
    privileged_agents(ds)
    nightly_export(ds)
    return jti
