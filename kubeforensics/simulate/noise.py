"""Benign background at realistic rates: leases, controllers, probes, app traffic, DNS, scrapes.

Rates (per 90-minute window, 4 nodes): node leases every 10 s per node, leader
election every 4 s, exec probes every 10 s, HTTP probes every 15 s, app calls
every 15-60 s with DNS search-path expansions, Prometheus scrapes every 30 s.
"""

from __future__ import annotations

from collections.abc import Iterator

from kubeforensics.simulate.clock import NS
from kubeforensics.simulate.cluster import Pod
from kubeforensics.simulate.dataset import MS, Dataset
from kubeforensics.simulate.formats import audit as fa
from kubeforensics.simulate.formats import hubble as fh
from kubeforensics.simulate.formats import tetragon as ft

KCM_RBAC = 'RBAC: allowed by ClusterRoleBinding "system:kube-controller-manager" of ClusterRole ' \
           '"system:kube-controller-manager" to User "system:kube-controller-manager"'
PUBLIC_INFO = 'RBAC: allowed by ClusterRoleBinding "system:public-info-viewer" of ClusterRole ' \
              '"system:public-info-viewer" to Group "system:unauthenticated"'
BROWSER_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
              "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
              "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Version/17.6 Safari/605.1.15")
SHOP_PATHS = ("/", "/products", "/products/42", "/cart", "/static/app.js", "/api/search?q=shoes", "/checkout")


def ticks(ds: Dataset, period_s: float, start: int | None = None, end: int | None = None,
          jitter: float = 0.15) -> Iterator[int]:
    t = (start if start is not None else ds.cl.t0) + int(ds.rng.uniform(0, period_s) * NS)
    end = end if end is not None else ds.cl.t1
    while t < end:
        yield t
        t += int(period_s * NS * (1 + ds.rng.uniform(-jitter, jitter)))


def control_plane(ds: Dataset) -> None:
    cl = ds.cl
    cp = cl.control_plane
    for node in cl.nodes:
        for t in ticks(ds, 10, jitter=0.05):
            ds.api(t, user=fa.node_user(node), verb="update",
                   uri=f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node.name}?timeout=10s",
                   ref=fa.ref("leases", "kube-node-lease", node.name, api_group="coordination.k8s.io"),
                   ip=node.ip, ua=fa.UA_KUBELET)
        for t in ticks(ds, 300, jitter=0.02):
            ds.api(t, user=fa.node_user(node), verb="patch", uri=f"/api/v1/nodes/{node.name}/status?timeout=10s",
                   ref=fa.ref("nodes", None, node.name, subresource="status"), ip=node.ip, ua=fa.UA_KUBELET)
    for comp, ua in (("kube-controller-manager", fa.UA_KCM + "/leader-election"),
                     ("kube-scheduler", fa.UA_SCHED.replace("/scheduler", "/leader-election"))):
        for t in ticks(ds, 4, jitter=0.1):
            ds.api(t, user=fa.system_user(f"system:{comp}"), verb="update",
                   uri=f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{comp}?timeout=5s",
                   ref=fa.ref("leases", "kube-system", comp, api_group="coordination.k8s.io"), ip=cp.ip, ua=ua,
                   authz=f'RBAC: allowed by ClusterRoleBinding "system:{comp}" of ClusterRole "system:{comp}" '
                         f'to User "system:{comp}"')
    for t in ticks(ds, 30):
        ds.api(t, user={"username": "system:anonymous", "groups": ["system:unauthenticated"]}, verb="get",
               uri="/livez", ref=None, ip=cp.ip, ua="kube-probe/1.30", authz=PUBLIC_INFO)
    eps = ds.cl.sa("kube-system", "endpointslice-controller")
    for t in ticks(ds, 45):
        svc = ds.rng.choice(sorted(cl.services))
        ns, name = svc.split("/")
        ds.api(t, user=fa.sa_user(eps), verb="update", ip=cp.ip, ua=fa.UA_KCM + "/system:serviceaccount:kube-system:"
               "endpointslice-controller", uri=f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/{name}-"
               f"{ds.ids.suffix()}", ref=fa.ref("endpointslices", ns, f"{name}-x", api_group="discovery.k8s.io"),
               authz='RBAC: allowed by ClusterRoleBinding "system:controller:endpointslice-controller" of ClusterRole '
                     '"system:controller:endpointslice-controller" to ServiceAccount "endpointslice-controller/kube-system"')
    for t in ticks(ds, 600):
        ds.api(t, user=fa.system_user("system:kube-controller-manager"), verb="list",
               uri="/api/v1/secrets?limit=500&resourceVersion=0", ref=fa.ref("secrets"), ip=cp.ip, ua=fa.UA_KCM,
               authz=KCM_RBAC)
    prom = cl.pods_of("monitoring", "prometheus")[0]
    for t in ticks(ds, 60):
        ds.api(t, user=fa.sa_user(prom.sa, prom, ds.ids.uuid()), verb="list", uri="/api/v1/endpoints?limit=500",
               ref=fa.ref("endpoints"), ip=prom.ip, ua="prometheus/v2.54.1",
               authz='RBAC: allowed by ClusterRoleBinding "prometheus" of ClusterRole "prometheus" to '
                     'ServiceAccount "prometheus/monitoring"')


def projected_tokens(ds: Dataset) -> None:
    """The kubelet refreshes every pod's projected service-account token (~80% of its hour)."""
    for pod in ds.cl.pods:
        if pod.static:
            continue
        t = max(pod.created_ns, ds.cl.t0) + ds.rng.randrange(0, 48 * 60) * NS
        while t < ds.cl.t1 and pod.alive(t):
            ds.api(t, user=fa.node_user(pod.node), verb="create", ip=pod.node.ip, ua=fa.UA_KUBELET, code=201,
                   uri=f"/api/v1/namespaces/{pod.namespace}/serviceaccounts/{pod.sa.name}/token",
                   ref=fa.ref("serviceaccounts", pod.namespace, pod.sa.name, subresource="token"))
            t += int(48 * 60 * NS * ds.rng.uniform(0.95, 1.05))


def exec_probes(ds: Dataset) -> None:
    for pod in ds.cl.pods:
        if not pod.exec_probe:
            continue
        binary, args = pod.exec_probe[0], " ".join(pod.exec_probe[1:])
        for t in ticks(ds, 10, max(pod.created_ns, ds.cl.t0), pod.deleted_ns, jitter=0.02):
            runc = ds.runc_exec(t, pod)
            probe = ds.in_container(t + ds.rng.randrange(4, 12) * MS, runc, pod, binary, args,
                                    exit_after=ds.rng.randrange(5, 40) * MS, exec_probe=True,
                                    uid=999 if pod.name.startswith(("postgres", "redis")) else 0)
            ds.exit(runc, probe.start_ns + ds.rng.randrange(45, 90) * MS)


def host_processes(ds: Dataset) -> None:
    for node in ds.cl.nodes:
        kubelet = node.procs["kubelet"]
        for t in ticks(ds, 60):
            ds.spawn(t, kubelet, "/usr/sbin/iptables", "-w 5 -W 100000 -S KUBE-KUBELET-CANARY -t mangle",
                     exit_after=ds.rng.randrange(3, 15) * MS)
        for t in ticks(ds, 900):
            ds.spawn(t, kubelet, "/usr/bin/mount", "-t tmpfs -o size=8G tmpfs /var/lib/kubelet/pods/"
                     f"{ds.ids.uuid()}/volumes/kubernetes.io~projected/kube-api-access-{ds.ids.suffix()}",
                     exit_after=ds.rng.randrange(2, 9) * MS)


def _pick(ds: Dataset, pods: list[Pod], t: int) -> Pod | None:
    alive = [p for p in pods if p.alive(t)]
    return ds.rng.choice(alive) if alive else None


def app_traffic(ds: Dataset) -> None:
    cl = ds.cl
    svc = cl.services
    flows = (  # (client ns, client prefix, service, period s, dns every n, http path)
        ("shop", "frontend", "shop/checkout-api", 15, 3, "/api/v2/cart"),
        ("shop", "checkout-api", "data/postgres", 30, 4, None),
        ("shop", "checkout-api", "shop/redis", 20, 5, None),
        ("data", "reports", "data/postgres", 60, 1, None),
    )
    for cns, prefix, target, period, dns_every, path in flows:
        service = svc[target]
        tns, tname = target.split("/")
        for client in list(cl.pods_of(cns, prefix)):
            for i, t in enumerate(ticks(ds, period, max(client.created_ns, cl.t0), client.deleted_ns)):
                init = client.containers[0].init
                server = _pick(ds, cl.pods_of(tns, tname), t)
                if init is None or server is None:
                    continue
                if i % dns_every == 0:
                    ds.dns(t - 3 * MS, client, tname if tns == cns else f"{tname}.{tns}")
                http = ("POST", f"http://{tname}.{tns}.svc.cluster.local{path}", 200, "node-fetch/1.0") if path else None
                ds.connect(t, init, server.ip, service.port if tname != "checkout-api" else 3000, service=(tns, tname),
                           http=http)
    for client in cl.pods_of("shop", "checkout-api"):
        for t in ticks(ds, 120, max(client.created_ns, cl.t0), client.deleted_ns):
            init = client.containers[0].init
            if init is None:
                continue
            _, ips = ds.dns(t - 5 * MS, client, "api.stripe.com")
            ds.connect(t, init, ips[0], 443, names=["api.stripe.com"])
    prom = cl.pods_of("monitoring", "prometheus")[0]
    assert prom.containers[0].init is not None
    for scraped in [p for p in cl.pods if p.http_probe_port and not p.host_network and p is not prom]:
        for t in ticks(ds, 30, max(scraped.created_ns, cl.t0), scraped.deleted_ns, jitter=0.01):
            ds.connect(t, prom.containers[0].init, scraped.ip, scraped.http_probe_port, kprobe=False,
                       http=("GET", f"http://{scraped.ip}:{scraped.http_probe_port}/metrics", 200, "Prometheus/2.54.1"))


def kubelet_probes(ds: Dataset) -> None:
    for pod in ds.cl.pods:
        if not pod.http_probe_port or pod.host_network:
            continue
        for t in ticks(ds, 20, max(pod.created_ns, ds.cl.t0), pod.deleted_ns, jitter=0.01):
            ds.inbound(t, pod.node.ip, fh.HOST, pod, pod.http_probe_port,
                       http=("GET", f"http://{pod.ip}:{pod.http_probe_port}/healthz", 200, "kube-probe/1.30"))


def ingress(ds: Dataset) -> None:
    clients = [f"{ds.rng.randrange(2, 223)}.{ds.rng.randrange(256)}.{ds.rng.randrange(256)}.{ds.rng.randrange(1, 255)}"
               for _ in range(40)]
    for t in ticks(ds, 10, jitter=0.9):
        pod = _pick(ds, ds.cl.pods_of("shop", "frontend"), t)
        if pod is None:
            continue
        ds.inbound(t, ds.rng.choice(clients), fh.WORLD, pod, 8080,
                   http=("GET", f"http://shop.acme.example{ds.rng.choice(SHOP_PATHS)}", 200, ds.rng.choice(BROWSER_UA)))


def lost_events(ds: Dataset) -> None:
    for _ in range(ds.rng.randrange(3, 7)):
        t = ds.rng.randrange(ds.cl.t0, ds.cl.t1)
        node = ds.rng.choice(ds.cl.nodes)
        ds.add("hubble", t, fh.lost_events(t, node.name, ds.rng.randrange(1, 300), ds.rng.randrange(2)))


def falco_noise(ds: Dataset) -> None:
    prom = ds.cl.pods_of("monitoring", "prometheus")[0]
    assert prom.containers[0].init is not None
    for t in ticks(ds, 600):
        ds.kprobe(prom.containers[0].init, t, "tcp_connect",
                  [ft.sock_arg(prom.ip, ds.rng.randrange(32768, 60999), "10.96.0.1", 443)], "network-connect")
        ds.falco_proc(t + 40_000, "Contact K8S API Server From Container", "Notice",
                      "Unexpected connection to K8s API Server from container", prom.containers[0].init,
                      ["container", "network", "k8s", "mitre_discovery", "T1565"], evt_type="connect",
                      extra={"fd.name": f"{prom.ip}:{ds.rng.randrange(32768, 60999)}->10.96.0.1:443"})
    for pod in ds.cl.pods_of("kube-system", "cilium"):
        c = pod.containers[0]
        if c.init is None:
            continue
        for t in ticks(ds, 2400):
            p = ds.spawn(t, c.init, "/usr/bin/cilium-health-responder", "--listen 4240 --pidfile "
                         "/var/run/cilium/state/health-endpoint.pid", exit_after=ds.rng.randrange(1, 9) * NS)
            ds.falco_proc(t + 2 * MS, "Change thread namespace", "Notice",
                          "Namespace change (setns) by unexpected program", p,
                          ["process", "mitre_privilege_escalation", "T1611"], evt_type="setns")


def host_alerts(ds: Dataset) -> None:
    """A classic false positive on cloud nodes: the SSM agent reads /etc/shadow (host process: null k8s fields)."""
    for node in ds.cl.workers:
        for t in ticks(ds, 1800):
            p = ds.spawn(t, node.procs["systemd"], "/usr/bin/amazon-ssm-agent", "-inventory", cwd="/",
                         exit_after=ds.rng.randrange(200, 900) * MS)
            ds.falco_proc(t + 40 * MS, "Read sensitive file untrusted", "Warning",
                          "Sensitive file opened for reading by non-trusted program", p,
                          ["host", "container", "filesystem", "mitre_credential_access", "T1555"], evt_type="openat",
                          extra={"fd.name": "/etc/shadow"})


def unhealthy(ds: Dataset) -> None:
    pods = ds.cl.pods_of("shop", "checkout-api", ds.cl.t0)
    for pod in pods[:1]:
        t = ds.cl.t0 + ds.rng.randrange(5, 30) * 60 * NS
        n = ds.rng.randrange(3, 9)
        ds.event(t, "Pod", pod.namespace, pod.name, pod.uid, "Unhealthy",
                 f'Readiness probe failed: Get "http://{pod.ip}:3000/healthz": context deadline exceeded '
                 "(Client.Timeout exceeded while awaiting headers)", host=pod.node.name, etype="Warning",
                 field_path="spec.containers{checkout-api}", count=n, t_last=t + n * 15 * NS)


def generate(ds: Dataset) -> None:
    """All periodic benign streams over the window (call after the scenario and the deploys)."""
    control_plane(ds)
    projected_tokens(ds)
    exec_probes(ds)
    host_processes(ds)
    app_traffic(ds)
    kubelet_probes(ds)
    ingress(ds)
    lost_events(ds)
    falco_noise(ds)
    host_alerts(ds)
    unhealthy(ds)
