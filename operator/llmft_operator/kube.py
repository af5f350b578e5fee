"""The few Kubernetes API calls the operator makes, returning the API's JSON as plain dicts.

Bodies are read raw (no client models), so the status mapping sees exactly what the API server
sent, and nothing here holds a Secret's values longer than it takes to list its keys.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from llmft.api.common import GROUP, SECRET_OPT_IN_LABEL, VERSION
from llmft.api.kinds import KINDS

log = logging.getLogger("llmft.operator.kube")

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# How long "it exists" is believed for a ConfigMap, PVC or ServiceAccount: a burst of resources
# sharing one artefact PVC then costs one lookup, and a deletion is noticed within seconds.
EXISTS_TTL_SECONDS = 10.0


def load_api_client(pool_size: int = 32) -> client.ApiClient:
    """An API client from the pod's service account, or from KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    # Handlers run in a thread pool; each thread may hold a connection.
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


# Times a reconcile whose status write met a newer version reads the object and tries again.
STALE_RETRIES = 3


class StaleObject(Exception):
    """A write conditioned on an object's resourceVersion met a newer version of the object."""


def _json(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


def owner_uids(obj: dict[str, Any]) -> set[str]:
    return {ref.get("uid", "") for ref in (obj.get("metadata") or {}).get("ownerReferences") or []}


class Kube:
    """Typed-enough access to the resources, Jobs, Pods and inputs the operator reads."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._forbidden_logged: set[str] = set()
        self._exists_until: dict[tuple[str, str, str], float] = {}
        # One lookup of a name at a time: a burst waits for it rather than repeating it.
        self._exists_locks = [threading.Lock() for _ in range(16)]

    # --- llmft resources

    def get_resource(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, KINDS[kind].plural, name, _preload_content=False
                )
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def patch_status(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch the status subresource (maps merge; lists such as conditions replace).

        With `resource_version`, the API server applies the patch only to that version of the
        object (optimistic concurrency); another version raises StaleObject.
        """
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return _json(
                self.custom.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    namespace,
                    KINDS[kind].plural,
                    name,
                    body,
                    _preload_content=False,
                )
            )
        except ApiException as err:
            if err.status == 409 and resource_version:
                stale = f"{kind} {namespace}/{name} changed since {resource_version}"
                raise StaleObject(stale) from err
            raise

    def list_resources(
        self, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        """The llmft resources of a kind in a namespace that carry the given labels."""
        body = _json(
            self.custom.list_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                KINDS[kind].plural,
                label_selector=label_selector,
                _preload_content=False,
            )
        )
        return list(body.get("items") or [])

    def create_resource(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create an llmft resource (an Experiment's child); None when the name is taken (409)."""
        meta = obj["metadata"]
        try:
            return _json(
                self.custom.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    meta["namespace"],
                    KINDS[obj["kind"]].plural,
                    obj,
                    _preload_content=False,
                )
            )
        except ApiException as err:
            if err.status == 409:
                return None
            raise

    def annotate_resource(
        self, kind: str, namespace: str, name: str, annotations: dict[str, str]
    ) -> None:
        """Merge-patch annotations onto an llmft resource (asking a trial to stop)."""
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            KINDS[kind].plural,
            name,
            {"metadata": {"annotations": annotations}},
        )

    # --- the workload's Job and Pods

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, in the background, its pods (a stopped trial); gone already is fine."""
        try:
            self.batch.delete_namespaced_job(
                name, namespace, propagation_policy="Background", _preload_content=False
            )
        except ApiException as err:
            if err.status != 404:
                raise

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(self.batch.read_namespaced_job(name, namespace, _preload_content=False))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        body = _json(
            self.core.list_namespaced_pod(
                namespace, label_selector=f"{JOB_NAME_LABEL}={job_name}", _preload_content=False
            )
        )
        return list(body.get("items") or [])

    def failed_create(self, namespace: str, job_uid: str) -> str | None:
        """The message of the latest FailedCreate event of a Job (its pod was refused), if any."""
        body = _json(
            self.core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.uid={job_uid},reason=FailedCreate",
                _preload_content=False,
            )
        )
        events = sorted(
            body.get("items") or [],
            key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "",
        )
        return str(events[-1].get("message") or "FailedCreate") if events else None

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create a ConfigMap or Job; None when one of that name exists already (409)."""
        namespace = obj["metadata"]["namespace"]
        body: Any = obj  # the client serialises plain dicts as they are
        try:
            if obj["kind"] == "Job":
                return _json(
                    self.batch.create_namespaced_job(namespace, body, _preload_content=False)
                )
            if obj["kind"] == "ConfigMap":
                return _json(
                    self.core.create_namespaced_config_map(namespace, body, _preload_content=False)
                )
        except ApiException as err:
            if err.status == 409:
                return None
            raise
        raise ValueError(f"cannot create a {obj['kind']}")

    # --- inputs

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(
                self.core.read_namespaced_config_map(name, namespace, _preload_content=False)
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def _forbidden(self, what: str, err: ApiException) -> bool:
        if err.status != 403:
            return False
        if what not in self._forbidden_logged:
            self._forbidden_logged.add(what)
            log.warning("not allowed to read %s (RBAC); not checking that they exist", what)
        return True

    def secret_keys(self, namespace: str, name: str) -> tuple[frozenset[str], bool] | None:
        """Key names of a Secret and whether it opted in to llmft (SECRET_OPT_IN_LABEL); None if
        it does not exist. The values are dropped at once.

        Raises PermissionError when RBAC forbids reading Secrets (the check is then skipped).
        """
        try:
            body = _json(self.core.read_namespaced_secret(name, namespace, _preload_content=False))
        except ApiException as err:
            if err.status == 404:
                return None
            if self._forbidden("secrets", err):
                raise PermissionError("secrets") from None
            raise
        keys = frozenset((body.get("data") or {}).keys())
        labels = (body.get("metadata") or {}).get("labels") or {}
        opted_in = labels.get(SECRET_OPT_IN_LABEL) == "true"
        del body
        return keys, opted_in

    def exists(self, kind: str, namespace: str, name: str) -> bool:
        """Whether a ConfigMap, PVC or ServiceAccount exists (True when RBAC forbids looking)."""
        key = (kind, namespace, name)
        if self._exists_until.get(key, 0.0) > time.monotonic():
            return True
        with self._exists_locks[hash(key) % len(self._exists_locks)]:
            if self._exists_until.get(key, 0.0) > time.monotonic():
                return True  # looked up while this thread waited
            return self._look_up(kind, namespace, name)

    def _look_up(self, kind: str, namespace: str, name: str) -> bool:
        key = (kind, namespace, name)
        read = {
            "ConfigMap": self.core.read_namespaced_config_map,
            "PersistentVolumeClaim": self.core.read_namespaced_persistent_volume_claim,
            "ServiceAccount": self.core.read_namespaced_service_account,
        }[kind]
        try:
            read(name, namespace, _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                self._exists_until.pop(key, None)
                return False
            if self._forbidden(kind, err):
                return True
            raise
        self._exists_until[key] = time.monotonic() + EXISTS_TTL_SECONDS
        return True
