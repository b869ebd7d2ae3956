"""``--scale N [--span D]``: the scenario's dataset plus bulk routine records up to about N records, streamed.

The bulk records are the highest-volume routine streams of a real cluster
(node lease renewals, exec probes, kubelet HTTP probes), built from templates
rendered once through the normal record builders, so they have exactly the
same shape.  They are generated in time order and merged slice by slice with
the scenario's records, so memory stays bounded whatever N is.

Without a span the bulk fills the scenario's window (about an hour).  With
``span`` the bulk is spread evenly over the ``span`` that ends where the
scenario's window ends, so a week-long case holds ~1/168 of its routine records
in any hour; the scenario's own records (the attack, its look-alikes and the
window's noise) keep their times, so the ground truth is unchanged.  Before the
window only what existed then makes records: exec probes of containers already
started and kubelet ``iptables`` canaries of nodes already booted (Tetragon),
probes of pods already created (Hubble); a stream starts later than the span
when nothing of it existed that early.
"""

from __future__ import annotations

import binascii
import bisect
import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from kubeforensics.simulate import SpanError
from kubeforensics.simulate.clock import NS, rfc6, rfc9
from kubeforensics.simulate.cluster import Process
from kubeforensics.simulate.dataset import Dataset
from kubeforensics.simulate.formats import audit as fa
from kubeforensics.simulate.formats import hubble as fh
from kubeforensics.simulate.formats import k8s as fk
from kubeforensics.simulate.formats import tetragon as ft
from kubeforensics.simulate.output import ROTATED_FRACTION, _close, dump_json, event_list, open_out, path_of

SLICE = 10_000
GZ_LEVEL = 1  # bulk output favours speed over size
SHARES = {"audit": 0.35, "tetragon": 0.25, "hubble": 0.4}
Slice = list[tuple[int, bytes]]
Maker = Callable[[int, int, float], Slice]  # (first index, end index, ns between records) -> time-ordered lines
Bulk = tuple[int, Maker]  # (time of the first record, maker whose record i is at that time + i * step)
MAX_SPAN = 366 * 86400 * NS
PRE_WINDOW_EXIT_NS = 40_000_000  # before the window a probe exits at most this long after its exec

S_TIME = 978307200 * NS + 123456789  # 2001-01-01T00:00:00.123456789Z: never a real time in a dataset
S_TIME2 = 978310800 * NS + 987654321
_SEC: dict[int, bytes] = {}
_DAY: dict[int, bytes] = {}


def _sec(s: int) -> bytes:
    """``YYYY-MM-DDTHH:MM:SS`` of epoch second ``s`` (a week-long span has few repeats: no strftime per second)."""
    b = _SEC.get(s)
    if b is None:
        if len(_SEC) > 100_000:
            _SEC.clear()
        d, r = divmod(s, 86400)
        day = _DAY.get(d)
        if day is None:
            day = _DAY[d] = rfc9(d * 86400 * NS)[:11].encode()
        b = b"%s%02d:%02d:%02d" % (day, r // 3600, r // 60 % 60, r % 60)
        _SEC[s] = b
    return b


def _template(rec: dict[str, Any], slots: dict[str, tuple[str, str]]) -> tuple[bytes, list[str]]:
    """A positional bytes %-template of ``rec``: each sentinel becomes ``%s``/``%d``; returns (template, slot order)."""
    s = orjson.dumps(rec).decode().replace("%", "%%")
    found: list[tuple[int, str, str, str]] = []
    for name, (sentinel, conv) in slots.items():
        start = 0
        while (pos := s.find(sentinel, start)) >= 0:
            found.append((pos, name, sentinel, conv))
            start = pos + len(sentinel)
        if not any(f[1] == name for f in found):
            raise AssertionError(f"sentinel {name} not in template")
    found.sort()
    out, last = [], 0
    for pos, _, sentinel, conv in found:
        out.append(s[last:pos])
        out.append(conv)
        last = pos + len(sentinel)
    out.append(s[last:])
    return "".join(out).encode(), [f[1] for f in found]


def _schedule(items: list[tuple[int, int | None, Any]], window: list[Any], start: int,
              t0: int) -> tuple[int, list[int], list[list[Any]]]:
    """When each template may be used: (first usable time, segment start times, templates per segment).

    ``items`` are (alive from, alive until or None, template) for the time before the window ``t0``;
    from ``t0`` on the ``window`` templates are used (as without a span).  Leading segments where
    nothing is alive are dropped (the stream starts later); a gap later on keeps the previous templates.
    """
    if start >= t0:
        return t0, [t0], [window]
    cuts = {start} | {x for s, e, _ in items for x in (s, e) if x is not None and start < x < t0}
    bounds: list[int] = []
    lists: list[list[Any]] = []
    for b in sorted(cuts):
        alive = [x for s, e, x in items if s <= b and (e is None or b < e)]
        if not alive and not lists:
            continue
        bounds.append(b)
        lists.append(alive or lists[-1])
    bounds.append(t0)
    lists.append(window)
    return bounds[0], bounds, lists


def _audit_maker(ds: Dataset, start: int) -> Bulk:
    aid_prefix = ds.ids.uuid()[:24].encode()
    tmpls = []
    for node in ds.cl.nodes:
        rec = fa.event(audit_id="@AID@", stage="ResponseComplete", t_recv=S_TIME, t_stage=S_TIME2, level="Metadata",
                       verb="update", user=fa.node_user(node),
                       uri=f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node.name}?timeout=10s",
                       source_ips=[node.ip], user_agent=fa.UA_KUBELET, code=200,
                       object_ref=fa.ref("leases", "kube-node-lease", node.name, api_group="coordination.k8s.io"),
                       annotations={"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""})
        tmpl, order = _template(rec, {"aid": ("@AID@", "%s%012x"), "recv": (rfc6(S_TIME), "%s.%06dZ"),
                                      "stage": (rfc6(S_TIME2), "%s.%06dZ")})
        assert order == ["aid", "recv", "stage"], order
        tmpls.append(tmpl)
    n = len(tmpls)
    t0 = min(start, ds.cl.t0)  # every node renews its lease all along (the cluster is months old)

    def make(i0: int, i1: int, step: float) -> Slice:
        out = []
        for i in range(i0, i1):
            t = t0 + int(i * step)
            ts = t + 1_500_000 + (i % 7) * 31_000
            out.append((ts, tmpls[i % n] % (aid_prefix, i, _sec(t // NS), t % NS // 1000, _sec(ts // NS),
                                             ts % NS // 1000)))
        return out

    return t0, make


def _tetragon_maker(ds: Dataset, start: int) -> Bulk:
    probes = [p for p in ds.cl.pods if p.exec_probe and p.containers[0].shim is not None]
    tmpls: list[tuple[bytes, int, bytes, bytes, bool]] = []  # (node prefix, boot, exec, exit, in a container)
    before: list[tuple[int, int | None, tuple[bytes, int, bytes, bytes, bool]]] = []
    slots = {"eid": ("@EID@", "%s"), "pid": ("\"pid\":7777777", "\"pid\":%d"), "cpid": ("\"pid\":31337", "\"pid\":%d"),
             "start": (rfc9(S_TIME), "%s.%09dZ")}
    for pod in probes:
        c = pod.containers[0]
        assert c.shim is not None and pod.exec_probe is not None
        p = Process(node=pod.node, pid=7777777, start_ns=S_TIME, binary=pod.exec_probe[0],
                    args=" ".join(pod.exec_probe[1:]), cwd="/", uid=999, parent=c.shim, pod=pod, container=c,
                    host_ns=False, cpid=31337, exec_probe=True)
        p.cache["exec_id"] = "@EID@"
        ex, o1 = _template(ft.exec_event(p), slots)
        ez, o2 = _template(ft.exit_event(p, S_TIME2), {**slots, "end": (rfc9(S_TIME2), "%s.%09dZ")})
        assert o1 == ["eid", "pid", "start", "cpid", "start"], o1
        assert o2 == ["eid", "pid", "start", "cpid", "end", "end"], o2
        tmpl = (f"{pod.node.name}:".encode(), pod.node.boot_ns, ex, ez, True)
        tmpls.append(tmpl)
        assert c.init is not None
        before.append((c.init.start_ns, pod.deleted_ns, tmpl))
    if start < ds.cl.t0:  # the kubelet's iptables canary (a host process) runs on every booted node
        host_slots = {k: slots[k] for k in ("eid", "pid", "start")}
        for node in ds.cl.nodes:
            kubelet = node.procs["kubelet"]
            p = Process(node=node, pid=7777777, start_ns=S_TIME, binary="/usr/sbin/iptables",
                        args="-w 5 -W 100000 -S KUBE-KUBELET-CANARY -t mangle", cwd="/", uid=0, parent=kubelet,
                        host_ns=True)
            p.cache["exec_id"] = "@EID@"
            ex, o1 = _template(ft.exec_event(p), host_slots)
            ez, o2 = _template(ft.exit_event(p, S_TIME2), {**host_slots, "end": (rfc9(S_TIME2), "%s.%09dZ")})
            assert o1 == ["eid", "pid", "start", "start"], o1
            assert o2 == ["eid", "pid", "start", "end", "end"], o2
            before.append((kubelet.start_ns + NS, None, (f"{node.name}:".encode(), node.boot_ns, ex, ez, False)))
    t0 = ds.cl.t0
    first, bounds, lists = _schedule(before, tmpls, start, t0)
    pid0 = 4_000_000
    b64 = binascii.b2a_base64

    def make(i0: int, i1: int, step: float) -> Slice:
        out = []
        lat = int(step * 0.5)
        seg = bisect.bisect_right(bounds, first + int(2 * (i0 // 2) * step)) - 1
        cur, nxt = lists[seg], bounds[seg + 1] if seg + 1 < len(bounds) else 1 << 62
        n = len(cur)
        for i in range(i0, i1):
            k = i // 2
            t = first + int(2 * k * step)
            if t >= nxt:
                seg = bisect.bisect_right(bounds, t) - 1
                cur, nxt = lists[seg], bounds[seg + 1] if seg + 1 < len(bounds) else 1 << 62
                n = len(cur)
            node, boot, ex, ez, in_pod = cur[k % n]
            pid = pid0 + k
            eid = b64(b"%s%d:%d" % (node, t - boot, pid), newline=False)
            sec, frac = _sec(t // NS), t % NS
            cpid = pid % 30000 + 100
            if i % 2:
                te = t + (lat if t >= t0 else min(lat, PRE_WINDOW_EXIT_NS))
                se, fe = _sec(te // NS), te % NS
                out.append((te, ez % ((eid, pid, sec, frac, cpid, se, fe, se, fe) if in_pod
                                      else (eid, pid, sec, frac, se, fe, se, fe))))
            else:
                out.append((t, ex % ((eid, pid, sec, frac, cpid, sec, frac) if in_pod
                                     else (eid, pid, sec, frac, sec, frac))))
        return out

    return first, make


def _hubble_maker(ds: Dataset, start: int) -> Bulk:
    pods = [p for p in ds.cl.pods if p.http_probe_port and not p.host_network]
    uprefix = ds.ids.uuid()[:24].encode()
    tmpls = []
    before: list[tuple[int, int | None, bytes]] = []
    for pod in pods:
        ep = fh.endpoint(pod, ds.cl.name)
        for reply in (False, True):
            rec = fh.flow(t=S_TIME, uuid="@UUID@", node=pod.node.name, src_ip=pod.ip if reply else pod.node.ip,
                          dst_ip=pod.node.ip if reply else pod.ip, src=ep if reply else fh.HOST,
                          dst=fh.HOST if reply else ep, proto="TCP", sport=pod.http_probe_port if reply else 45454,
                          dport=45454 if reply else pod.http_probe_port,
                          flags={"SYN": True, "ACK": True} if reply else {"SYN": True}, direction="INGRESS",
                          is_reply=reply)
            tmpl, order = _template(rec, {"uuid": ("@UUID@", "%s%012x"), "time": (rfc9(S_TIME), "%s.%09dZ"),
                                          "port": ("45454", "%d")})
            assert order == ["time", "uuid", "port", "time"], order
            tmpls.append(tmpl)
            before.append((pod.created_ns, pod.deleted_ns, tmpl))
    t0 = ds.cl.t0
    # a probe and its reply are consecutive records with the same pod: segments hold whole pairs
    first, bounds, lists = _schedule(before, tmpls, start, t0)

    def make(i0: int, i1: int, step: float) -> Slice:
        out = []
        seg = bisect.bisect_right(bounds, first + int((i0 & ~1) * step)) - 1
        cur, nxt = lists[seg], bounds[seg + 1] if seg + 1 < len(bounds) else 1 << 62
        n = len(cur)
        for i in range(i0, i1):
            t = first + int(i * step)
            if t >= nxt and not i & 1:  # change templates only at a probe, never between it and its reply
                seg = bisect.bisect_right(bounds, t) - 1
                cur, nxt = lists[seg], bounds[seg + 1] if seg + 1 < len(bounds) else 1 << 62
                n = len(cur)
            sec, frac = _sec(t // NS), t % NS
            out.append((t, cur[i % n] % (sec, frac, uprefix, i, 32768 + (i >> 1) % 28000, sec, frac)))
        return out

    return first, make


def _bulk(ds: Dataset, bulk: Bulk, count: int) -> Iterator[Slice]:
    """``count`` records evenly from the bulk's first time to the end of the window, in time-ordered slices."""
    if count <= 0:
        return
    first, make = bulk
    step = (ds.cl.t1 - first) / count
    for i0 in range(0, count, SLICE):
        yield make(i0, min(count, i0 + SLICE), step)


def _merged(base: list[tuple[int, int, dict[str, Any]]], bulk: Iterator[Slice]) -> Iterator[list[bytes]]:
    """Time-ordered chunks of lines: the scenario's records merged into the bulk slices."""
    j = 0
    for chunk in bulk:
        hi = chunk[-1][0]
        extra = []
        while j < len(base) and base[j][0] <= hi:
            extra.append((base[j][0], orjson.dumps(base[j][2])))
            j += 1
        if extra:
            chunk = sorted(chunk + extra, key=lambda r: r[0])
        yield [line for _, line in chunk]
    rest = [orjson.dumps(r[2]) for r in base[j:]]
    if rest:
        yield rest


class _Writer:
    """Writes chunks on a background thread (file writes and gzip release the GIL)."""

    def __init__(self) -> None:
        self.q: queue.Queue[tuple[IO[bytes], bytes] | None] = queue.Queue(maxsize=3)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.q.get()) is not None:
            try:
                item[0].write(item[1])
            except BaseException as exc:  # noqa: BLE001 - re-raised in close()
                self.error = exc

    def write(self, f: IO[bytes], data: bytes) -> None:
        self.q.put((f, data))

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _write(w: _Writer, path_main: Path, chunks: Iterator[list[bytes]], gz: bool, rotated: Path | None = None,
           cut: int = -1) -> tuple[int, list[IO[bytes]]]:
    n = 0
    files: list[IO[bytes]] = []
    f = open_out(rotated, True, GZ_LEVEL) if rotated is not None else open_out(path_main, gz, GZ_LEVEL)
    files.append(f)
    for lines in chunks:
        if rotated is not None and n + len(lines) >= cut:
            k = cut - n
            if k:
                w.write(f, b"\n".join(lines[:k]) + b"\n")
            f = open_out(path_main, gz, GZ_LEVEL)
            files.append(f)
            rotated = None
            n += k
            lines = lines[k:]
            if not lines:
                continue
        w.write(f, b"\n".join(lines) + b"\n")
        n += len(lines)
    if rotated is not None:  # fewer lines than the cut: an empty current log
        files.append(open_out(path_main, gz, GZ_LEVEL))
    return n, files


_JOB: dict[str, Any] = {}  # what forked workers inherit (set just before forking)


def _write_source(key: str) -> int:
    """Write one large file (audit with its rotated part, tetragon or hubble); runs in a worker or inline."""
    ds, recs, makers, extra, out, compress = (_JOB[k] for k in ("ds", "recs", "makers", "extra", "out", "compress"))
    n = int(extra * SHARES[key])
    chunks = _merged(recs[key], _bulk(ds, makers[key], n))
    w = _Writer()
    files: list[IO[bytes]] = []
    try:
        if key == "audit":
            cut = int((len(recs[key]) + n) * ROTATED_FRACTION)
            count, files = _write(w, path_of(out, "audit", compress), chunks, compress,
                                  rotated=path_of(out, "audit-rotated", compress), cut=cut)
        else:
            count, files = _write(w, path_of(out, key, compress), chunks, compress)
    finally:
        w.close()
        for f in files:
            _close(f)
    return count


def span_start(ds: Dataset, span: int | None) -> int:
    """Where the bulk records start: the window's start, or ``span`` ns before the window's end."""
    if span is None:
        return ds.cl.t0
    window = ds.cl.t1 - ds.cl.t0
    if span < window:
        raise SpanError(f"span of {span / NS / 60:.0f} min is shorter than the scenario's window "
                        f"({window / NS / 60:.0f} min)", hint="give at least 90m, e.g. --span 7d")
    if span > MAX_SPAN:
        raise SpanError(f"span of {span / NS / 86400:.0f} days is too long", hint="at most 366d")
    return ds.cl.t1 - span


def write_scaled(ds: Dataset, out: Path, total: int, *, compress: bool = False,
                 processes: int | None = None, span: int | None = None) -> dict[str, int]:
    """Write ``ds`` plus bulk routine records so that all files hold about ``total`` records.

    ``span`` (ns): spread the bulk records over this long, ending with the scenario's window (which
    keeps its records and times); default: over the window only.
    The three large files are written by up to ``processes`` forked workers (default: the CPU count, at
    most 3); every file is written by one process from the same seeded state, so output is identical.
    """
    start = span_start(ds, span)
    recs = {k: sorted(v, key=lambda r: (r[0], r[1])) for k, v in ds.buf.items()}
    objects = fk.object_list(ds.cl, ds.cl.t1, ds.extra_objects)
    base_total = sum(len(v) for v in recs.values()) + len(objects["items"])
    extra = max(0, total - base_total)
    makers = {"audit": _audit_maker(ds, start), "tetragon": _tetragon_maker(ds, start),
              "hubble": _hubble_maker(ds, start)}
    path_of(out, "audit", compress).parent.mkdir(parents=True, exist_ok=True)
    _JOB.update(ds=ds, recs=recs, makers=makers, extra=extra, out=out, compress=compress)
    keys = ["hubble", "audit", "tetragon"]  # largest first
    workers = min(3, processes if processes is not None else (os.cpu_count() or 1))
    try:
        if workers > 1 and "fork" in mp.get_all_start_methods():
            with mp.get_context("fork").Pool(workers) as pool:
                done = dict(zip(keys, pool.map(_write_source, keys, chunksize=1)))
        else:
            done = {k: _write_source(k) for k in keys}
    finally:
        _JOB.clear()
    counts = {k: done[k] for k in SHARES}
    path_of(out, "falco", False).parent.mkdir(parents=True, exist_ok=True)
    with open(path_of(out, "falco", False), "wb") as f:
        f.write(b"".join(orjson.dumps(r[2]) + b"\n" for r in recs["falco"]))
    counts["falco"] = len(recs["falco"])
    events = event_list(ds, recs["k8s-events"])
    dump_json(path_of(out, "k8s-events", compress), events)
    counts["k8s-events"] = len(events["items"])
    dump_json(path_of(out, "k8s-objects", compress), objects)
    counts["k8s-objects"] = len(objects["items"])
    dump_json(path_of(out, "truth", compress), ds.truth.to_json(), indent=2)
    return counts
