"""The resources the Kubernetes collector reads, and a client that can only read.

Read-only by construction, on two levels:

* :class:`ReadOnlyApiClient` refuses every HTTP method but ``GET`` before a request
  leaves the process, whatever code calls it;
* :class:`ReadOnlyApi` exposes only the ``list_*``/``read_*`` (and ``get_code``)
  methods of a generated API class; any other attribute (``create_*``,
  ``patch_*``, ``delete_*``, ``replace_*``, ``connect_*``) raises.

``deploy/rbac-readonly.yaml`` grants exactly get/list/watch on :data:`RESOURCES`
(without ``secrets``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s_client

from kubeforensics.errors import CollectorError

READ_PREFIXES = ("list_", "read_")
READ_EXTRA = frozenset({"get_code", "api_client"})


@dataclass(frozen=True)
class Resource:
    """One collected resource: plural name, group/version, kind and the client calls that list it."""

    name: str
    group_version: str
    kind: str
    api: str
    list_all: str
    list_namespaced: str | None = None  # None: cluster-scoped
    opt_in: bool = False  # never collected unless asked for (secrets)

    @property
    def namespaced(self) -> bool:
        return self.list_namespaced is not None

    @property
    def group(self) -> str:
        return self.group_version.rpartition("/")[0]


def _r(name: str, gv: str, kind: str, api: str, list_all: str, list_ns: str | None = None,
       opt_in: bool = False) -> Resource:
    return Resource(name, gv, kind, api, list_all, list_ns, opt_in)


#: Everything the collector can list, keyed by the name used on the command line and in the record.
RESOURCES: dict[str, Resource] = {r.name: r for r in (
    _r("namespaces", "v1", "Namespace", "CoreV1Api", "list_namespace"),
    _r("nodes", "v1", "Node", "CoreV1Api", "list_node"),
    _r("pods", "v1", "Pod", "CoreV1Api", "list_pod_for_all_namespaces", "list_namespaced_pod"),
    _r("serviceaccounts", "v1", "ServiceAccount", "CoreV1Api", "list_service_account_for_all_namespaces",
       "list_namespaced_service_account"),
    _r("events", "v1", "Event", "CoreV1Api", "list_event_for_all_namespaces", "list_namespaced_event"),
    _r("events.events.k8s.io", "events.k8s.io/v1", "Event", "EventsV1Api", "list_event_for_all_namespaces",
       "list_namespaced_event"),
    _r("roles", "rbac.authorization.k8s.io/v1", "Role", "RbacAuthorizationV1Api", "list_role_for_all_namespaces",
       "list_namespaced_role"),
    _r("rolebindings", "rbac.authorization.k8s.io/v1", "RoleBinding", "RbacAuthorizationV1Api",
       "list_role_binding_for_all_namespaces", "list_namespaced_role_binding"),
    _r("clusterroles", "rbac.authorization.k8s.io/v1", "ClusterRole", "RbacAuthorizationV1Api", "list_cluster_role"),
    _r("clusterrolebindings", "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "RbacAuthorizationV1Api",
       "list_cluster_role_binding"),
    _r("deployments", "apps/v1", "Deployment", "AppsV1Api", "list_deployment_for_all_namespaces",
       "list_namespaced_deployment"),
    _r("replicasets", "apps/v1", "ReplicaSet", "AppsV1Api", "list_replica_set_for_all_namespaces",
       "list_namespaced_replica_set"),
    _r("daemonsets", "apps/v1", "DaemonSet", "AppsV1Api", "list_daemon_set_for_all_namespaces",
       "list_namespaced_daemon_set"),
    _r("statefulsets", "apps/v1", "StatefulSet", "AppsV1Api", "list_stateful_set_for_all_namespaces",
       "list_namespaced_stateful_set"),
    _r("jobs", "batch/v1", "Job", "BatchV1Api", "list_job_for_all_namespaces", "list_namespaced_job"),
    _r("cronjobs", "batch/v1", "CronJob", "BatchV1Api", "list_cron_job_for_all_namespaces",
       "list_namespaced_cron_job"),
    _r("mutatingwebhookconfigurations", "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration",
       "AdmissionregistrationV1Api", "list_mutating_webhook_configuration"),
    _r("validatingwebhookconfigurations", "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration",
       "AdmissionregistrationV1Api", "list_validating_webhook_configuration"),
    _r("certificatesigningrequests", "certificates.k8s.io/v1", "CertificateSigningRequest", "CertificatesV1Api",
       "list_certificate_signing_request"),
    _r("secrets", "v1", "Secret", "CoreV1Api", "list_secret_for_all_namespaces", "list_namespaced_secret",
       opt_in=True),
)}
DEFAULT_RESOURCES: tuple[str, ...] = tuple(n for n, r in RESOURCES.items() if not r.opt_in)


def resolve(names: list[str] | tuple[str, ...] | None) -> list[Resource]:
    """Resources by name (default: every resource but the opt-in ones); unknown names raise."""
    if not names:
        return [RESOURCES[n] for n in DEFAULT_RESOURCES]
    out = []
    for n in names:
        if n not in RESOURCES:
            raise CollectorError(f"unknown resource {n!r}", hint=f"one of {', '.join(RESOURCES)}")
        out.append(RESOURCES[n])
    return out


class ReadOnlyApiClient(k8s_client.ApiClient):
    """An ``ApiClient`` that refuses any HTTP method other than GET (the collector never writes)."""

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if str(method).upper() != "GET":
            raise CollectorError(f"refusing {method} {url}: the Kubernetes collector is read-only")
        return super().call_api(method, url, *args, **kwargs)


class ReadOnlyApi:
    """A generated API class (``CoreV1Api`` ...) reduced to its reading methods."""

    def __init__(self, api: Any) -> None:
        object.__setattr__(self, "_api", api)

    def __getattr__(self, name: str) -> Any:
        if name.startswith(READ_PREFIXES) or name in READ_EXTRA:
            return getattr(self._api, name)
        raise CollectorError(f"refusing {type(self._api).__name__}.{name}: the Kubernetes collector is read-only")

    def __setattr__(self, name: str, value: Any) -> None:
        raise CollectorError("a read-only API cannot be modified")


def api_for(api_client: ReadOnlyApiClient, api_name: str) -> ReadOnlyApi:
    """The generated API class ``api_name`` over ``api_client``, read methods only."""
    return ReadOnlyApi(getattr(k8s_client, api_name)(api_client))


def strip_secret(obj: dict[str, Any]) -> dict[str, Any]:
    """A Secret without its values: ``data``/``stringData`` become key names, last-applied is dropped."""
    out = {k: v for k, v in obj.items() if k not in ("data", "stringData")}
    for key in ("data", "stringData"):
        if isinstance(obj.get(key), dict):
            out[f"{key}_keys"] = sorted(obj[key])
    meta = dict(out.get("metadata") or {})
    ann = meta.get("annotations")
    if isinstance(ann, dict):
        meta["annotations"] = {k: v for k, v in ann.items()
                               if k != "kubectl.kubernetes.io/last-applied-configuration"}
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out
