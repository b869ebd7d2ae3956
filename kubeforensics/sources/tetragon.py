"""Tetragon events (``tetra getevents -o json`` and the JSON export file) -> the ``processes`` table.

Every event type becomes one row of :data:`~kubeforensics.schema.PROCESSES`:

* ``process_exec`` / ``process_exit`` (``status`` -> ``exit_status``, ``signal`` -> ``exit_signal``);
* ``process_kprobe``, ``process_tracepoint``, ``process_lsm``, ``process_uprobe``,
  ``process_usdt``: ``function_name`` (tracepoints as ``subsys/event``, uprobes by
  ``symbol``, USDT as ``provider:name``), ``policy_name``, ``action``,
  ``return_value``, the arguments as a JSON list in ``decoded_args`` (``string_arg``
  values redacted, ``bytes_arg`` left as base64 text), the first ``sock_arg``/``skb_arg``
  into ``sock_family``/``sock_protocol``/``saddr``/``daddr``/``sport``/``dport`` (or a
  ``sockaddr_arg`` into ``daddr``/``dport``), the first ``file_arg``/``path_arg`` path into
  ``file_path``;
* ``process_loader`` (``path`` -> ``file_path``);
* ``process_throttle`` and ``rate_limit_info``: they carry no process; their payload is
  kept in ``decoded_args`` (``process_throttle.type`` also in ``action``);
* any other event key (``process_connect``, ``process_close``, ...) is kept: ``event_type``
  is the key without ``process_``, the process columns are filled when the payload has a
  ``process`` object, and the whole event is stored in ``raw``.

``time`` comes from the envelope's ``time`` (or ``process_exit.time``); when both are
missing, from ``process.start_time`` (``time_source`` says which).  Version drift handled:
``pod.labels`` (before v1.1, a list of ``key=value`` strings or a map) and ``pod_labels``;
``ancestors`` on any event type (v1.4+).  Kernel stack traces (``stack_trace``, later
``kernel_stack_trace``) have no column and are not stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kubeforensics import redact
from kubeforensics.errors import RecordError
from kubeforensics.schema import PROCESSES, TableSpec
from kubeforensics.sources.fields import as_json, container_hex, integer, obj, strings, text, ts

if TYPE_CHECKING:
    from kubeforensics.sources.base import BulkResult

KNOWN_EVENTS = frozenset(
    {
        "process_exec",
        "process_exit",
        "process_kprobe",
        "process_tracepoint",
        "process_uprobe",
        "process_lsm",
        "process_loader",
        "process_throttle",
        "process_usdt",
        "rate_limit_info",
    }
)
#: Keys that sit beside the event key in every export line.
ENVELOPE_KEYS = frozenset({"node_name", "time", "cluster_name", "node_labels", "aggregation_info"})
_PROBES = frozenset({"process_kprobe", "process_tracepoint", "process_lsm", "process_uprobe", "process_usdt"})
_SOCK_ARGS = ("sock_arg", "skb_arg")
_FILE_ARGS = ("file_arg", "path_arg", "linux_binprm_arg")
_INT_ARGS = ("int_arg", "long_arg", "size_arg", "uint_arg")


def _obj(value: Any, field: str) -> Mapping[str, Any]:
    """:func:`fields.obj` with a fast path for plain dicts (the common case, millions of times)."""
    return value if value.__class__ is dict else obj(value, field)


def _event_key(record: Mapping[str, Any]) -> str | None:
    """The one event key of a record; None when there is none or more than one."""
    found = None
    for k in record:
        if k in ENVELOPE_KEYS:
            continue
        if k in KNOWN_EVENTS or (isinstance(k, str) and k.startswith("process_")):
            if found is not None:
                return None
            found = k
    return found


def _labels(value: Any, field: str) -> Mapping[str, Any] | None:
    """``pod_labels`` map, or the older ``labels`` list of ``key=value`` strings, as a map."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value
    out: dict[str, str] = {}
    for item in strings(value, field) or ():
        key, _, val = item.partition("=")
        key = key.removeprefix("k8s:")
        out[key] = val
    return out


class TetragonReader:
    """Reader for Tetragon JSON events (see the module docstring for the mapping)."""

    name: ClassVar[str] = "tetragon"
    tables: ClassVar[tuple[TableSpec, ...]] = (PROCESSES,)

    def sniff(self, record: Mapping[str, Any]) -> bool:
        """True for an object with exactly one Tetragon event key and only envelope keys beside it.

        Parameters
        ----------
        record
            One JSON object from the evidence.
        """
        key = _event_key(record)
        if key is None or not isinstance(record[key], dict):
            return False
        if len(record) == 1:
            return key in KNOWN_EVENTS
        return all(k == key or k in ENVELOPE_KEYS for k in record) or "node_name" in record

    def extract(self, record: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
        """One ``processes`` row for one Tetragon event.

        Parameters
        ----------
        record
            One JSON object: ``{"<event key>": {...}, "node_name": ..., "time": ...}``.

        Raises
        ------
        RecordError
            No single event key, a field of the wrong type, or no usable time.
        """
        key = _event_key(record)
        if key is None:
            raise RecordError(
                "not a Tetragon event: expected exactly one event key (process_exec, process_kprobe, ...)"
            )
        ev = record[key]
        if not isinstance(ev, dict):
            raise RecordError(f"'{key}' is {type(ev).__name__}, not an object")
        try:
            return (("processes", self._row(record, key, ev)),)
        except RecordError as exc:
            raise RecordError(f"{key}: {exc.message}") from exc

    def bulk(self, path: Path, evidence: str, evidence_id: str) -> BulkResult | None:
        """Vectorised path for whole JSON-lines exports (see :mod:`kubeforensics.sources.tetragon_fast`)."""
        from kubeforensics.sources import tetragon_fast

        return tetragon_fast.bulk(path, evidence, evidence_id)

    def _row(self, record: Mapping[str, Any], key: str, ev: Mapping[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {
            "event_type": key.removeprefix("process_"),
            "node": text(record.get("node_name"), "node_name"),
            "cluster": text(record.get("cluster_name"), "cluster_name"),
        }
        proc = ev.get("process")
        if proc is not None:
            _process(_obj(proc, "process"), row)
        parent = ev.get("parent")
        if parent is not None:
            p = _obj(parent, "parent")
            row["parent_binary"] = text(p.get("binary"), "parent.binary")
            row["parent_args"] = redact.text(text(p.get("arguments"), "parent.arguments"))
            row["parent_pid"] = integer(p.get("pid"), "parent.pid")
            if row.get("parent_exec_id") is None:
                row["parent_exec_id"] = text(p.get("exec_id"), "parent.exec_id")
        ancestors = ev.get("ancestors")
        if ancestors is not None:
            if not isinstance(ancestors, list):
                raise RecordError(f"'ancestors' is {type(ancestors).__name__}, not a list")
            row["ancestors"] = [
                text(_obj(a, "ancestors[]").get("exec_id"), "ancestors[].exec_id") or "" for a in ancestors
            ]

        if key in _PROBES:
            _probe(key, ev, row)
        elif key == "process_exit":
            row["exit_status"] = integer(ev.get("status"), "status")
            row["exit_signal"] = text(ev.get("signal"), "signal") or None
        elif key == "process_loader":
            row["file_path"] = text(ev.get("path"), "path")
        elif key == "process_throttle":
            row["action"] = text(ev.get("type"), "type")
            row["decoded_args"] = as_json(ev)
        elif key == "rate_limit_info":
            row["decoded_args"] = as_json(ev)
        elif key not in KNOWN_EVENTS:
            row["raw"] = as_json(redact.k8s_object(dict(record)))

        t = record.get("time")
        if t is None or t == "":
            t = ev.get("time")  # process_exit carries its own time
        if t is not None and t != "":
            row["time"] = ts(t, "time")
            row["time_source"] = "time"
        elif row.get("start_time") is not None:
            row["time"] = row["start_time"]
            row["time_source"] = "process.start_time"
        else:
            raise RecordError("'time' is missing and there is no process.start_time to use instead")
        return row


def _process(p: Mapping[str, Any], row: dict[str, Any]) -> None:
    """Fill the process columns of ``row`` from a Tetragon Process object."""
    get = p.get
    row["exec_id"] = text(get("exec_id"), "process.exec_id")
    row["parent_exec_id"] = text(get("parent_exec_id"), "process.parent_exec_id")
    row["pid"] = integer(get("pid"), "process.pid")
    row["tid"] = integer(get("tid"), "process.tid")
    row["uid"] = integer(get("uid"), "process.uid")
    row["auid"] = integer(get("auid"), "process.auid")
    row["binary"] = text(get("binary"), "process.binary")
    row["args"] = redact.text(text(get("arguments"), "process.arguments"))
    row["cwd"] = text(get("cwd"), "process.cwd")
    row["flags"] = text(get("flags"), "process.flags")
    row["start_time"] = ts(get("start_time"), "process.start_time")
    cap = get("cap")
    if cap is not None:
        cap = _obj(cap, "process.cap")
        row["caps_effective"] = strings(cap.get("effective"), "process.cap.effective")
        row["caps_permitted"] = strings(cap.get("permitted"), "process.cap.permitted")
    ns = get("ns")
    if ns is not None:
        row["host_namespaces"] = [
            name
            for name, v in _obj(ns, "process.ns").items()
            if _obj(v, "process.ns.<name>").get("is_host") is True
        ]
    container_id = None
    pod = get("pod")
    if pod is not None:
        pod = _obj(pod, "process.pod")
        row["namespace"] = text(pod.get("namespace"), "process.pod.namespace")
        row["pod"] = text(pod.get("name"), "process.pod.name")
        row["pod_uid"] = text(pod.get("uid"), "process.pod.uid")
        row["workload"] = text(pod.get("workload"), "process.pod.workload")
        row["workload_kind"] = text(pod.get("workload_kind"), "process.pod.workload_kind")
        labels = pod.get("pod_labels")
        if labels is None:
            labels = _labels(pod.get("labels"), "process.pod.labels")
        else:
            labels = _obj(labels, "process.pod.pod_labels")
        row["pod_labels"] = as_json(labels) if labels is not None else None
        container = pod.get("container")
        if container is not None:
            c = _obj(container, "process.pod.container")
            container_id = container_hex(text(c.get("id"), "process.pod.container.id"))
            row["container_name"] = text(c.get("name"), "process.pod.container.name")
            image = c.get("image")
            if image is not None:
                image = _obj(image, "process.pod.container.image")
                row["image"] = text(image.get("name"), "process.pod.container.image.name")
                row["image_id"] = text(image.get("id"), "process.pod.container.image.id")
    if container_id is None:
        container_id = container_hex(text(get("docker"), "process.docker"))
    row["container_id"] = container_id


def _probe(key: str, ev: Mapping[str, Any], row: dict[str, Any]) -> None:
    """Fill the columns of a kprobe/tracepoint/lsm/uprobe/usdt event."""
    get = ev.get
    if key == "process_tracepoint":
        subsys = text(get("subsys"), "subsys")
        event = text(get("event"), "event")
        row["function_name"] = f"{subsys}/{event}" if subsys and event else (event or subsys)
    elif key == "process_uprobe":
        row["function_name"] = text(get("symbol"), "symbol")
        row["file_path"] = text(get("path"), "path")
    elif key == "process_usdt":
        provider = text(get("provider"), "provider")
        name = text(get("name"), "name")
        row["function_name"] = f"{provider}:{name}" if provider and name else (name or provider)
        row["file_path"] = text(get("path"), "path")
    else:
        row["function_name"] = text(get("function_name"), "function_name")
    row["policy_name"] = text(get("policy_name"), "policy_name")
    row["action"] = text(get("action"), "action")
    ret = get("return")
    if ret is not None:
        ret = _obj(ret, "return")
        for name in _INT_ARGS:
            if name in ret:
                row["return_value"] = integer(ret[name], "return." + name)
                break
    args = get("args")
    if args is None:
        return
    if not isinstance(args, list):
        raise RecordError(f"'args' is {type(args).__name__}, not a list")
    decoded: list[Any] = []
    have_sock = have_file = False
    for arg in args:
        a = _obj(arg, "args[]")
        if "string_arg" in a:
            a = {**a, "string_arg": redact.text(text(a["string_arg"], "args.string_arg"))}
        decoded.append(a)
        if not have_sock:
            for name in _SOCK_ARGS:
                if name in a:
                    _sock(_obj(a[name], "args." + name), row, "args." + name)
                    have_sock = True
                    break
            else:
                if "sockaddr_arg" in a:
                    s = _obj(a["sockaddr_arg"], "args.sockaddr_arg")
                    row["sock_family"] = text(s.get("family"), "args.sockaddr_arg.family")
                    row["daddr"] = text(s.get("addr"), "args.sockaddr_arg.addr")
                    row["dport"] = integer(s.get("port"), "args.sockaddr_arg.port", bits=32)
                    have_sock = True
        if not have_file:
            for name in _FILE_ARGS:
                if name in a:
                    path = text(_obj(a[name], "args." + name).get("path"), "args." + name + ".path")
                    if path:
                        row["file_path"] = path
                        have_file = True
                    break
    row["decoded_args"] = as_json(decoded)


def _sock(s: Mapping[str, Any], row: dict[str, Any], where: str) -> None:
    row["sock_family"] = text(s.get("family"), where + ".family")
    row["sock_protocol"] = text(s.get("protocol"), where + ".protocol")
    row["saddr"] = text(s.get("saddr"), where + ".saddr")
    row["daddr"] = text(s.get("daddr"), where + ".daddr")
    row["sport"] = integer(s.get("sport"), where + ".sport", bits=32)
    row["dport"] = integer(s.get("dport"), where + ".dport", bits=32)
