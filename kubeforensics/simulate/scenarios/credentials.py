"""C. Stolen CI credential (and an anonymous probe) -> kubectl exec -> data theft -> cleanup."""

from __future__ import annotations

from kubeforensics.simulate.clock import NS
from kubeforensics.simulate.dataset import MS, Dataset
from kubeforensics.simulate.formats import audit as fa
from kubeforensics.simulate.formats import tetragon as ft
from kubeforensics.simulate.noise import PUBLIC_INFO
from kubeforensics.simulate.scenarios.common import exec_session, public_ip

NAME = "stolen-credentials"
DESCRIPTION = "leaked CI token used from a new IP, exec into a database-facing pod, data theft, Events deleted"
PINNED: tuple[str, ...] = ()
UA = "kubectl/v1.31.2 (darwin/arm64) kubernetes/5864a46"
EDIT = 'RBAC: allowed by RoleBinding "deployer/{ns}" of ClusterRole "edit" to ServiceAccount "deployer/ci"'


def run(ds: Dataset) -> None:
    cl, rng, tr = ds.cl, ds.rng, ds.truth
    ip = public_ip(ds)
    sa = cl.sa("ci", "deployer")
    user = fa.sa_user(sa, None, ds.ci_jti)
    ts = "2025-12-01T10:20:00Z"
    for rb_ns in ("shop", "data"):
        cl.rbac.append({"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
                        "metadata": {"name": "deployer", "namespace": rb_ns, "uid": ds.ids.uuid(), "creationTimestamp": ts},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                        "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}]})
    pod = cl.pods_of("data", "reports")[0]
    t = cl.t0 + int((cl.t1 - cl.t0) * rng.uniform(0.35, 0.42))

    tr.begin(t, "T1078", "Initial Access", f"anonymous probing, then the CI token (credential JTI={ds.ci_jti}) used "
             f"from {ip} with {UA.split()[0]}", ip=ip, user=sa.username, credential_id=f"JTI={ds.ci_jti}")
    anon = {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
    ds.api(t, user=anon, verb="get", uri="/version", ref=None, ip=ip, ua="curl/8.5.0", authz=PUBLIC_INFO)
    ds.api(t + 4 * NS, user=anon, verb="list", uri="/api/v1/namespaces", ref=fa.ref("namespaces"), ip=ip,
           ua="curl/8.5.0", code=403, message='namespaces is forbidden: User "system:anonymous" cannot list resource '
           '"namespaces" in API group "" at the cluster scope')
    t += rng.randrange(60, 240) * NS
    ds.api(t, user=user, verb="get", uri="/api?timeout=32s", ref=None, ip=ip, ua=UA,
           authz='RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" to Group '
                 '"system:authenticated"')
    tr.end()

    t += rng.randrange(5, 30) * NS
    tr.begin(t, "T1613", "Discovery", "self rules review, namespaces (403), pods of shop and data", ip=ip,
             user=sa.username)
    calls: tuple[tuple[str, str, str, str | None, str, int], ...] = (
            ("create", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", "selfsubjectrulesreviews", None,
             "authorization.k8s.io", 201),
            ("list", "/api/v1/namespaces?limit=500", "namespaces", None, "", 403),
            ("list", "/api/v1/namespaces/shop/pods?limit=500", "pods", "shop", "", 200),
            ("list", "/api/v1/namespaces/data/pods?limit=500", "pods", "data", "", 200),
            ("get", f"/api/v1/namespaces/data/pods/{pod.name}", "pods", "data", "", 200))
    for verb, uri, res, ns, group, code in calls:
        ds.api(t, user=user, verb=verb, uri=uri, ref=fa.ref(res, ns, uri.rsplit("/", 1)[1] if verb == "get" else None,
                                                             api_group=group),
               ip=ip, ua=UA, code=code, authz=EDIT.format(ns=ns) if code < 400 and ns else "",
               message="" if code < 400 else f'{res} is forbidden: User "{sa.username}" cannot list resource "{res}"')
        t += rng.randrange(3, 20) * NS
    tr.end()

    t += rng.randrange(30, 90) * NS
    end = t + rng.randrange(10, 16) * 60 * NS
    tr.begin(t, "T1609", "Execution", f"kubectl exec -it into data/{pod.name} from {ip}", namespace="data",
             pod=pod.name, ip=ip, user=sa.username, process="/bin/bash")
    _, runc, bash = exec_session(ds, t, user=user, ip=ip, new_kubectl=True, ua=UA, pod=pod, command=["/bin/bash"],
                                 authz=EDIT.format(ns="data"), duration=end - t)
    tr.end()

    t = bash.start_ns + rng.randrange(10, 40) * NS
    tr.begin(t, "T1552.001", "Credential Access", "reads the entrypoint environment, searches keys and passwords",
             namespace="data", pod=pod.name, process="/bin/cat")
    for binary, args, dur in (("/bin/cat", "/proc/1/environ", 2), ("/usr/bin/find", "/ -name id_rsa", 4000),
                              ("/bin/grep", "-ri password /app /etc", 2500)):
        p = ds.spawn(t, bash, binary, args, exit_after=dur * MS, status=1 if binary.endswith("find") else 0)
        if binary == "/bin/cat":
            ds.kprobe(p, t + MS, "security_file_permission", [ft.file_arg("/proc/1/environ", "-r--------"),
                                                             {"int_arg": 4}], "sensitive-files", ret={"int_arg": 0})
        t += rng.randrange(8, 40) * NS
    tr.end()

    db = cl.pods_of("data", "postgres")[0]
    t += rng.randrange(30, 90) * NS
    tr.begin(t, "T1005", "Collection", f"python3 script started from bash dumps tables from postgres ({db.ip}:5432)",
             namespace="data", pod=pod.name, process="/usr/local/bin/python3", ip=db.ip, file="/tmp/out.csv")
    py = ds.spawn(t, bash, "/usr/local/bin/python3", "/tmp/d.py --host postgres.data --out /tmp/out.csv",
                  exit_after=rng.randrange(20, 60) * NS)
    ds.dns(t + 30 * MS, pod, "postgres.data")
    ds.connect(t + 40 * MS, py, db.ip, 5432, service=("data", "postgres"))
    tr.end()

    t += rng.randrange(90, 180) * NS
    tr.begin(t, "T1041", "Exfiltration", "kubectl cp of /tmp/out.csv (pods/exec with tar cf -)", namespace="data",
             pod=pod.name, ip=ip, process="/bin/tar", file="/tmp/out.csv")
    _, runc2, tar = exec_session(ds, t, user=user, ip=ip, new_kubectl=True, ua=UA, pod=pod,
                                 command=["tar", "cf", "-", "/tmp/out.csv"], authz=EDIT.format(ns="data"),
                                 duration=3 * NS, tty=False)
    ds.exit(tar, t + 2 * NS)
    ds.exit(runc2, t + 2 * NS + 20 * MS)
    tr.end()

    t += rng.randrange(60, 120) * NS
    tr.begin(t, "T1572", "Command and Control", f"port-forward to data/{db.name}:5432", namespace="data",
             pod=db.name, ip=ip, user=sa.username)
    ds.api(t, user=user, verb="get", uri=f"/api/v1/namespaces/data/pods/{db.name}/portforward?ports=5432", ip=ip,
           ua=UA, ref=fa.ref("pods", "data", db.name, subresource="portforward"), authz=EDIT.format(ns="data"),
           streaming_until=t + rng.randrange(5, 12) * 60 * NS, received_stage=True)
    tr.end()

    ds.exit(bash, end - NS)
    ds.exit(runc, end - NS + 15 * MS)
    t = end + rng.randrange(20, 60) * NS
    tr.begin(t, "T1070", "Defense Evasion", "deletecollection of the Events of namespace data", namespace="data",
             ip=ip, user=sa.username)
    ds.api(t, user=user, verb="deletecollection", uri="/api/v1/namespaces/data/events", ip=ip, ua=UA,
           ref=fa.ref("events", "data"), authz=EDIT.format(ns="data"), received_stage=True)
    ds.event_purges.append(("data", t))
    tr.end()
