"""The dataset under construction: emitting primitives that keep every source consistent.

Scenarios and noise call these primitives (spawn a process, open a connection,
resolve a name, call the API, raise an alert, record an Event); each primitive
writes the records of every source that would see it, from the same model
objects, and registers the record ids with the open ground-truth step.
"""

from __future__ import annotations

import random
from typing import Any

from kubeforensics.simulate.clock import NS, Ids
from kubeforensics.simulate.cluster import Cluster, Container, Pod, Process
from kubeforensics.simulate.formats import audit as fa
from kubeforensics.simulate.formats import falco as ff
from kubeforensics.simulate.formats import hubble as fh
from kubeforensics.simulate.formats import k8s as fk
from kubeforensics.simulate.formats import tetragon as ft
from kubeforensics.simulate.truth import GroundTruth

MS = 1_000_000
US = 1_000
Rec = tuple[int, int, dict[str, Any]]


class Dataset:
    """Records of all sources for one simulated window, plus the ground truth."""

    def __init__(self, cluster: Cluster, rng: random.Random, truth: GroundTruth) -> None:
        self.cl = cluster
        self.rng = rng
        self.ids = Ids(rng)
        self.truth = truth
        self.buf: dict[str, list[Rec]] = {s: [] for s in ("audit", "tetragon", "hubble", "falco", "k8s-events")}
        self.seq = 0
        self.rv = rng.randrange(400_000, 9_000_000)
        self.extra_objects: list[dict[str, Any]] = []
        self.event_names: set[str] = set()
        self.ci_jti = self.ids.uuid()  # credential id of the CI token (used by deploys, maybe stolen)
        self.event_purges: list[tuple[str, int]] = []  # (namespace, time) of deletecollection events
        self.webhook: tuple[str, str, int, str] | None = None  # (configuration, webhook, since, target ip)

    def add(self, source: str, t: int, rec: dict[str, Any], ident: str | None = None) -> None:
        self.seq += 1
        self.buf[source].append((t, self.seq, rec))
        if ident is not None:
            self.truth.record(source, ident)

    def next_rv(self) -> int:
        self.rv += self.rng.randrange(1, 30)
        return self.rv

    # ------------------------------------------------------------------ processes (Tetragon)
    def spawn(self, t: int, parent: Process, binary: str, args: str = "", *, pod: Pod | None = None,
              container: Container | None = None, host_ns: bool | None = None, uid: int | None = None,
              cwd: str | None = None, exit_after: int | None = None, status: int = 0, exec_probe: bool = False,
              flags: str = "execve clone", emit: bool = True) -> Process:
        """A new process under ``parent`` (inherits its pod, container and namespaces unless given)."""
        if pod is None and container is None and host_ns is None:
            pod, container, host_ns = parent.pod, parent.container, parent.host_ns
        node = parent.node
        p = Process(node=node, pid=node.pid(self.ids), start_ns=t, binary=binary, args=args,
                    cwd=cwd if cwd is not None else parent.cwd, uid=parent.uid if uid is None else uid,
                    parent=parent, pod=pod, container=container, host_ns=bool(host_ns), flags=flags,
                    cpid=self.rng.randrange(7, 4000) if container else 0, exec_probe=exec_probe,
                    hidden_docker=parent.hidden_docker)
        if emit:
            self.add("tetragon", t, ft.exec_event(p), p.exec_id)
        if exit_after is not None:
            self.exit(p, t + exit_after, status)
        return p

    def exit(self, p: Process, t: int, status: int = 0, signal: str | None = None) -> None:
        self.add("tetragon", t, ft.exit_event(p, t, status, signal), p.exec_id)

    def kprobe(self, p: Process, t: int, fn: str, args: list[dict[str, Any]], policy: str,
               ret: dict[str, Any] | None = None) -> None:
        self.add("tetragon", t, ft.kprobe(p, t, fn, args, policy, ret), p.exec_id)

    def runc_exec(self, t: int, pod: Pod, container: Container | None = None, emit: bool = True) -> Process:
        """``runc exec`` under the container's shim (host namespaces; the entry of ``kubectl exec`` and exec probes)."""
        c = container or pod.containers[0]
        assert c.shim is not None
        return self.spawn(t, c.shim, "/usr/sbin/runc",
                          f"--root /run/containerd/runc/k8s.io --log /run/containerd/io.containerd.runtime.v2.task/"
                          f"k8s.io/{c.cid}/log.json --log-format json exec --process /tmp/runc-process{self.rng.randrange(10**9)}"
                          f" --detach --pid-file /run/containerd/io.containerd.runtime.v2.task/k8s.io/{c.cid}/"
                          f"{self.ids.hex(64)}.pid {c.cid}", pod=None, container=None, host_ns=True,
                          cwd=c.shim.cwd, emit=emit)

    def in_container(self, t: int, runc: Process, pod: Pod, binary: str, args: str = "", *,
                     container: Container | None = None, exit_after: int | None = None, exec_probe: bool = False,
                     uid: int = 0) -> Process:
        c = container or pod.containers[0]
        return self.spawn(t, runc, binary, args, pod=pod, container=c, host_ns=False, cwd="/", uid=uid,
                          exit_after=exit_after, exec_probe=exec_probe)

    # ------------------------------------------------------------------ network (Tetragon kprobe + Hubble)
    def src_of(self, p: Process) -> tuple[str, dict[str, Any]]:
        pod = p.pod
        if pod is None or p.host_ns or pod.host_network:
            return p.node.ip, fh.HOST
        return pod.ip, fh.endpoint(pod, self.cl.name)

    def endpoint_for(self, ip: str, t: int) -> dict[str, Any]:
        if ip == self.cl.apiserver_ip:
            return fh.APISERVER
        if any(n.ip == ip for n in self.cl.nodes):
            return fh.HOST
        pod = self.cl.pod_by_ip(ip, t)
        return fh.endpoint(pod, self.cl.name) if pod else fh.WORLD

    def connect(self, t: int, p: Process, dst_ip: str, dport: int, *, proto: str = "TCP", kprobe: bool = True,
                verdict: str = "FORWARDED", reply: bool = True, service: tuple[str, str] | None = None,
                names: list[str] | None = None, http: tuple[str, str, int, str] | None = None,
                src_pod_for_l7: bool = True) -> list[str]:
        """``p`` connects to ``dst_ip:dport``: Tetragon kprobe at ``t``, Hubble flows microseconds later."""
        src_ip, src_ep = self.src_of(p)
        sport = self.rng.randrange(32768, 60999)
        if kprobe:
            fn, policy = ("tcp_connect", "network-connect") if proto == "TCP" else ("udp_sendmsg", "udp-egress")
            self.kprobe(p, t, fn, [ft.sock_arg(src_ip, sport, dst_ip, dport, proto)], policy)
        if dst_ip.startswith("127."):
            return []  # loopback never leaves the pod: Hubble sees nothing
        dst_ep = self.endpoint_for(dst_ip, t)
        node = p.node.name
        dst_service = {"name": service[1], "namespace": service[0]} if service else None
        uuids: list[str] = []
        t1 = t + self.rng.randrange(8, 60) * US
        u = self.ids.uuid()
        tcp = proto == "TCP"
        dropped = verdict == "DROPPED"
        self.add("hubble", t1, fh.flow(
            t=t1, uuid=u, node=node, src_ip=src_ip, dst_ip=dst_ip, src=src_ep, dst=dst_ep, proto=proto, sport=sport,
            dport=dport, flags={"SYN": True} if tcp else None, verdict=verdict, direction="EGRESS",
            is_reply=False, dst_service=dst_service, dst_names=names,
            drop_reason="POLICY_DENIED" if dropped else None), u)
        uuids.append(u)
        if dropped or not reply:
            return uuids
        t2 = t1 + self.rng.randrange(200, 30_000) * US
        u = self.ids.uuid()
        self.add("hubble", t2, fh.flow(
            t=t2, uuid=u, node=node, src_ip=dst_ip, dst_ip=src_ip, src=dst_ep, dst=src_ep, proto=proto, sport=dport,
            dport=sport, flags={"SYN": True, "ACK": True} if tcp else None, direction="EGRESS", is_reply=True), u)
        uuids.append(u)
        pod = p.pod
        dst_pod = self.cl.pod_by_ip(dst_ip, t)
        l7_seen = (pod is not None and pod.l7 and not p.host_ns) or (dst_pod is not None and dst_pod.l7)
        if http and l7_seen and src_pod_for_l7:
            method, url, code, ua = http
            t3 = t2 + self.rng.randrange(100, 900) * US
            for resp, tt in ((False, t3), (True, t3 + self.rng.randrange(2, 90) * MS)):
                u = self.ids.uuid()
                self.add("hubble", tt, fh.flow(
                    t=tt, uuid=u, node=node, src_ip=dst_ip if resp else src_ip, dst_ip=src_ip if resp else dst_ip,
                    src=dst_ep if resp else src_ep, dst=src_ep if resp else dst_ep, proto="TCP",
                    sport=dport if resp else sport, dport=sport if resp else dport, direction="EGRESS",
                    is_reply=resp, l7=fh.http_l7(method, url, code=code if resp else None, ua=ua),
                    summary=f"HTTP/1.1 {method} {url}" if not resp else f"HTTP/1.1 {code} {method} {url}"), u)
                uuids.append(u)
        return uuids

    def inbound(self, t: int, src_ip: str, src_ep: dict[str, Any], pod: Pod, dport: int, *,
                http: tuple[str, str, int, str] | None = None) -> list[str]:
        """Traffic into ``pod`` from a non-process source (the world through the load balancer, kubelet probes)."""
        node = pod.node.name
        dst_ep = fh.endpoint(pod, self.cl.name)
        sport = self.rng.randrange(32768, 60999)
        uuids = []
        steps: list[tuple[bool, dict[str, Any] | None, dict[str, bool] | None, str]] = [
            (False, None, {"SYN": True}, ""), (True, None, {"SYN": True, "ACK": True}, "")]
        if http and pod.l7:
            m, url, code, ua = http
            steps += [(False, fh.http_l7(m, url, ua=ua), None, f"HTTP/1.1 {m} {url}"),
                      (True, fh.http_l7(m, url, code=code, ua=ua), None, f"HTTP/1.1 {code} {m} {url}")]
        tt = t
        for reply, l7, flags, summ in steps:
            u = self.ids.uuid()
            self.add("hubble", tt, fh.flow(
                t=tt, uuid=u, node=node, src_ip=pod.ip if reply else src_ip, dst_ip=src_ip if reply else pod.ip,
                src=dst_ep if reply else src_ep, dst=src_ep if reply else dst_ep, proto="TCP",
                sport=dport if reply else sport, dport=sport if reply else dport, flags=flags,
                direction="INGRESS", is_reply=reply, l7=l7, summary=summ), u)
            uuids.append(u)
            tt += self.rng.randrange(100, 4000) * US
        return uuids

    def resolve(self, name: str) -> tuple[str, list[str]]:
        """Absolute name and answers for ``name`` (services resolve to ClusterIPs)."""
        for svc in self.cl.services.values():
            fq = f"{svc.name}.{svc.namespace}.svc.cluster.local"
            if name in (svc.name, f"{svc.name}.{svc.namespace}", f"{svc.name}.{svc.namespace}.svc", fq):
                return fq + ".", [svc.cluster_ip]
        h = sum(name.encode()) * 2654435761 % (1 << 24)
        return name.rstrip(".") + ".", [f"{34 + h % 150}.{(h >> 8) % 256}.{h % 251}.{(h >> 4) % 250 + 2}"]

    def dns(self, t: int, pod: Pod, name: str, *, qtype: str = "A", answer: list[str] | None = None,
            namespace: str | None = None) -> tuple[list[str], list[str]]:
        """A lookup through kube-dns with the search-path expansions (ndots:5); returns (flow uuids, answers)."""
        final, ips = self.resolve(name)
        if answer is not None:
            ips = answer
        ns = namespace or pod.namespace
        cands: list[str] = []
        if not name.endswith(".") and name.count(".") < 5:
            for suffix in (f"{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local"):
                q = f"{name}.{suffix}."
                if q == final:
                    break
                cands.append(q)
        cands.append(final)
        dns_pods = self.cl.services["kube-system/kube-dns"].pods
        server = dns_pods[sum(pod.name.encode()) % len(dns_pods)]
        src_ip, src_ep = (pod.node.ip, fh.HOST) if pod.host_network else (pod.ip, fh.endpoint(pod, self.cl.name))
        dst_ep = fh.endpoint(server, self.cl.name)
        svc = {"name": "kube-dns", "namespace": "kube-system"}
        uuids: list[str] = []
        tt = t
        sport = self.rng.randrange(32768, 60999)
        for q in cands:
            last = q == cands[-1]
            rcode = 0 if last else 3
            for resp in (False, True):
                u = self.ids.uuid()
                if pod.l7 and not pod.host_network:
                    l7 = fh.dns_l7(q, qtype, response=resp, rcode=rcode, ips=ips if (resp and last) else None)
                    summ = fh.dns_summary(q, qtype, response=resp, rcode=rcode, ips=ips if last else None)
                else:
                    l7, summ = None, "UDP"
                rec = fh.flow(t=tt, uuid=u, node=pod.node.name, src_ip=server.ip if resp else src_ip,
                              dst_ip=src_ip if resp else server.ip, src=dst_ep if resp else src_ep,
                              dst=src_ep if resp else dst_ep, proto="UDP", sport=53 if resp else sport,
                              dport=sport if resp else 53, direction="EGRESS", is_reply=resp, l7=l7, summary=summ,
                              dst_service=None if resp else svc)
                self.add("hubble", tt, rec, u)
                uuids.append(u)
                tt += self.rng.randrange(150, 900) * US
        return uuids, ips

    # ------------------------------------------------------------------ API server (audit)
    def api(self, t: int, *, user: dict[str, Any], verb: str, uri: str, ref: dict[str, Any] | None, ip: str,
            ua: str, code: int = 200, level: str = "Metadata", req: Any = None, resp: Any = None,
            authz: str = "", message: str = "", received_stage: bool = False, dur: int | None = None,
            streaming_until: int | None = None, extra_ips: list[str] | None = None) -> str:
        """One API request; returns its auditID.  ``streaming_until``: exec/attach/portforward sessions."""
        aid = self.ids.uuid()
        d = dur if dur is not None else self.rng.randrange(800, 25_000) * US
        decision = "forbid" if code == 403 else "allow"
        ann = {"authorization.k8s.io/decision": decision, "authorization.k8s.io/reason": authz}
        if self.webhook and verb == "create" and ref and ref.get("resource") == "pods" \
                and "subresource" not in ref and t >= self.webhook[2]:
            conf, hook, _, target = self.webhook
            ann["mutation.webhook.admission.k8s.io/round_0_index_0"] = \
                f'{{"configuration":"{conf}","webhook":"{hook}","mutated":true}}'
            ann["patch.webhook.admission.k8s.io/round_0_index_0"] = \
                f'{{"configuration":"{conf}","webhook":"{hook}","patch":[{{"op":"add","path":"/spec/initContainers",' \
                f'"value":"..."}}],"patchType":"JSONPatch"}}'
            api = self.cl.pods_of("kube-system", "kube-apiserver")[0].containers[0].init
            if api is not None:
                self.connect(t + 2 * MS, api, target, 8443)
        ips = [*(extra_ips or []), ip]
        common: dict[str, Any] = {
            "audit_id": aid, "t_recv": t, "level": level, "verb": verb, "uri": uri, "user": user, "source_ips": ips,
            "user_agent": ua, "object_ref": ref, "message": message, "request_object": req, "response_object": resp}
        if received_stage:
            self.add("audit", t, fa.event(stage="RequestReceived", t_stage=t, code=None, annotations=None, **common),
                     aid)
        if streaming_until is not None:
            self.add("audit", t + d, fa.event(stage="ResponseStarted", t_stage=t + d, code=101, annotations=ann,
                                               **common), aid)
            self.add("audit", streaming_until, fa.event(stage="ResponseComplete", t_stage=streaming_until, code=101,
                                                        annotations=ann, **common), aid)
        else:
            self.add("audit", t + d, fa.event(stage="ResponseComplete", t_stage=t + d, code=code, annotations=ann,
                                               **common), aid)
        return aid

    # ------------------------------------------------------------------ Falco
    def falco_proc(self, t: int, rule: str, priority: str, text: str, p: Process, tags: list[str],
                   evt_type: str = "execve", extra: dict[str, Any] | None = None) -> str:
        fields = ff.proc_fields(p, t, evt_type)
        if extra:
            fields.update(extra)
            fields = dict(sorted(fields.items()))
        rec = ff.alert(t, rule=rule, priority=priority, source="syscall", hostname=p.node.name,
                       message=ff.proc_message(text, fields), fields=fields, tags=tags)
        self.add("falco", t, rec, rec["time"])
        return rec["time"]

    def falco_audit(self, t: int, rule: str, priority: str, text: str, fields: dict[str, Any],
                    tags: list[str]) -> str:
        msg = f"{text} (user={fields['ka.user.name']} verb={fields['ka.verb']} uri={fields['ka.uri']} " \
              f"resp={fields['ka.response.code']})"
        rec = ff.alert(t, rule=rule, priority=priority, source="k8s_audit", hostname=self.cl.control_plane.name,
                       message=msg, fields=fields, tags=tags)
        self.add("falco", t, rec, rec["time"])
        return rec["time"]

    # ------------------------------------------------------------------ Kubernetes Events
    def event(self, t: int, kind: str, ns: str, name: str, uid: str, reason: str, message: str, *,
              component: str = "kubelet", host: str | None = None, etype: str = "Normal",
              field_path: str | None = None, count: int = 1, t_last: int | None = None,
              event_time: bool = False, action: str = "", api_version: str = "v1") -> str:
        tn = t
        while f"{ns}/{name}.{tn:x}" in self.event_names:
            tn += 1
        ename = f"{name}.{tn:x}"
        self.event_names.add(f"{ns}/{ename}")
        rec = fk.event(name=ename, uid=self.ids.uuid(), rv=self.next_rv(), obj_kind=kind, obj_ns=ns, obj_name=name,
                       obj_uid=uid, reason=reason, message=message, component=component, host=host, t_first=t,
                       t_last=t_last or t, count=count, etype=etype, field_path=field_path, event_time=event_time,
                       action=action, api_version=api_version)
        self.add("k8s-events", t_last or t, rec, ename)
        return ename

    # ------------------------------------------------------------------ pod lifecycle
    def start_pod(self, t: int, pod: Pod, *, scheduler: bool = True) -> int:
        """Schedule and start ``pod`` (created at ``t``): binding, Events, shim and entrypoint execs."""
        from kubeforensics.simulate.topology import attach_processes

        cl, rng = self.cl, self.rng
        pod.created_ns = t
        cp = cl.control_plane
        tb = t + rng.randrange(5, 60) * MS
        if scheduler:
            self.api(tb, user=fa.system_user("system:kube-scheduler"), verb="create",
                     uri=f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/binding",
                     ref=fa.ref("pods", pod.namespace, pod.name, subresource="binding", uid=pod.uid),
                     ip=cp.ip, ua=fa.UA_SCHED, code=201,
                     authz='RBAC: allowed by ClusterRoleBinding "system:kube-scheduler" of ClusterRole '
                           '"system:kube-scheduler" to User "system:kube-scheduler"')
            self.event(tb, "Pod", pod.namespace, pod.name, pod.uid, "Scheduled",
                       f"Successfully assigned {pod.namespace}/{pod.name} to {pod.node.name}",
                       component="default-scheduler", host=None, event_time=True, action="Binding")
        tk = tb + rng.randrange(200, 900) * MS
        node = pod.node.name
        attach_processes(self.ids, pod, tk + 2 * NS, flags="execve rootcwd clone")
        for c in pod.containers:
            fp = f"spec.containers{{{c.name}}}"
            self.event(tk, "Pod", pod.namespace, pod.name, pod.uid, "Pulling", f'Pulling image "{c.image}"',
                       host=node, field_path=fp)
            pulled = rng.randrange(800, 9000) * MS
            self.event(tk + pulled, "Pod", pod.namespace, pod.name, pod.uid, "Pulled",
                       f'Successfully pulled image "{c.image}" in {pulled / NS:.3f}s '
                       f"(including waiting). Image size: {rng.randrange(20, 400) * 1048576 + rng.randrange(10**6)} bytes.",
                       host=node, field_path=fp)
            ts = tk + pulled + rng.randrange(30, 300) * MS
            c.start_ns = ts
            assert c.shim is not None and c.init is not None
            c.shim.start_ns = ts - rng.randrange(30, 90) * MS
            c.init.start_ns = ts
            c.shim.cache.clear()
            c.init.cache.clear()
            self.event(ts - 20 * MS, "Pod", pod.namespace, pod.name, pod.uid, "Created", f"Created container {c.name}",
                       host=node, field_path=fp)
            self.add("tetragon", c.shim.start_ns, ft.exec_event(c.shim), c.shim.exec_id)
            self.add("tetragon", ts, ft.exec_event(c.init), c.init.exec_id)
            self.event(ts + 15 * MS, "Pod", pod.namespace, pod.name, pod.uid, "Started", f"Started container {c.name}",
                       host=node, field_path=fp)
            tk = ts
        self.api(tk + rng.randrange(100, 900) * MS, user=fa.node_user(pod.node), verb="patch",
                 uri=f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/status", ip=pod.node.ip, ua=fa.UA_KUBELET,
                 ref=fa.ref("pods", pod.namespace, pod.name, subresource="status", uid=pod.uid))
        return tk

    def kill_pod(self, t: int, pod: Pod, grace_s: int = 30) -> None:
        """The kubelet stops ``pod``: Killing Events, entrypoint and shim exits."""
        for c in pod.containers:
            self.event(t, "Pod", pod.namespace, pod.name, pod.uid, "Killing", f"Stopping container {c.name}",
                       host=pod.node.name, field_path=f"spec.containers{{{c.name}}}")
            te = t + self.rng.randrange(200, 2000) * MS
            if c.init is not None:
                self.exit(c.init, te, 0, "SIGTERM" if self.rng.random() < 0.5 else None)
            if c.shim is not None:
                self.exit(c.shim, te + 80 * MS)
        pod.deleted_ns = t + self.rng.randrange(1, 3) * NS
