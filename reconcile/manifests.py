"""Kubernetes objects for sandboxes and databases, as plain dicts (pure: no I/O, no Django).

Shapes follow the reference (fulling §4.3-4.8: Sealos labels and annotations, ingress-nginx
annotations) with its hazards fixed:

- env values live in a Secret (`{name}-env`, base64 `data`) consumed with `envFrom`; no secret
  value is ever written into the StatefulSet, the Service or the Ingresses;
- the pod template carries `tenter.dev/env-checksum`, so replacing the Secret with a different env
  rolls the pod, and since the Secret is replaced as a whole, removed keys really disappear;
- readiness probes, `automountServiceAccountToken: false`, non-root pod;
- database connection URLs URL-encode the user and password.

Every object carries Tenter's ownership labels (see `labels`, `owned_by`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

from reconcile import names
from reconcile.specs import KUBEBLOCKS_V1ALPHA1, DatabaseSpec, SandboxSpec

Manifest = dict[str, Any]

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "tenter"
APP_NAME = "app.kubernetes.io/name"
PROJECT_LABEL = "tenter.dev/project"
RESOURCE_LABEL = "tenter.dev/resource"
OWNER_LABEL = "tenter.dev/owner"
POOL_LABEL = "tenter.dev/pool"
ENV_CHECKSUM_ANNOTATION = "tenter.dev/env-checksum"
SEALOS_APP_LABEL = "cloud.sealos.io/app-deploy-manager"
SEALOS_DOMAIN_LABEL = "cloud.sealos.io/app-deploy-manager-domain"
FULLING_PROJECT_LABEL = "project.fullstackagent.io/name"

HOME_DIR = "/home/fulling"
APP_PORT = 3000
TTYD_PORT = 7681
FILEBROWSER_PORT = 8080
INGRESS_PORTS = {"app": APP_PORT, "ttyd": TTYD_PORT, "filebrowser": FILEBROWSER_PORT}
RUN_AS_USER = 1001
FILE_BROWSER_USERNAME = "FILE_BROWSER_USERNAME"
FILE_BROWSER_PASSWORD = "FILE_BROWSER_PASSWORD"
TTYD_USER = "user"

POSTGRES_PORT = 5432
POSTGRES_COMPONENT = "postgresql"

_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

ResourceKind = Literal["sandbox", "database"]


# -- labels -----------------------------------------------------------------------------------


def _label_value(value: str, key: str) -> str:
    value = str(value)
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise ValueError(f"label {key}={value!r} is not a valid label value")
    return value


def labels(spec: SandboxSpec | DatabaseSpec, resource_kind: ResourceKind) -> dict[str, str]:
    """Ownership labels of every object of a sandbox or database (plus the reference's Sealos labels)."""
    if resource_kind not in ("sandbox", "database"):
        raise ValueError(f"unknown resource kind {resource_kind!r}")
    out = {
        MANAGED_BY: MANAGED_BY_VALUE,
        APP_NAME: f"tenter-{resource_kind}",
        PROJECT_LABEL: spec.project_id,
        RESOURCE_LABEL: spec.resource_id,
        OWNER_LABEL: spec.owner_id,
        FULLING_PROJECT_LABEL: spec.project_slug,
    }
    if resource_kind == "sandbox":
        out[SEALOS_APP_LABEL] = spec.name
        pool_id = getattr(spec, "pool_id", "")
        if pool_id:  # an idle pool member belongs to no project yet
            del out[PROJECT_LABEL], out[FULLING_PROJECT_LABEL]
            out[POOL_LABEL] = pool_id
    else:
        out["sealos-db-provider-cr"] = spec.name
        out["app.kubernetes.io/instance"] = spec.name
        out["clusterdefinition.kubeblocks.io/name"] = "postgresql"
    return {key: _label_value(value, key) for key, value in out.items()}


def is_managed(obj_labels: Mapping[str, str] | None) -> bool:
    """True when the labels say Tenter manages the object."""
    return obj_labels is not None and obj_labels.get(MANAGED_BY) == MANAGED_BY_VALUE


def owned_by(obj_labels: Mapping[str, str] | None, resource_id: object) -> bool:
    """Adoption rule: an existing object is ours only if it is Tenter-managed for this very resource."""
    if obj_labels is None or not is_managed(obj_labels):
        return False
    return obj_labels.get(RESOURCE_LABEL) == str(resource_id)


def selector(name: str) -> dict[str, str]:
    """The pod selector of a sandbox (immutable once the StatefulSet exists)."""
    return {"app": name}


def _metadata(
    spec: SandboxSpec | DatabaseSpec, name: str, kind: ResourceKind, **extra_labels: str
) -> Manifest:
    meta_labels = labels(spec, kind)
    meta_labels.update({k: _label_value(v, k) for k, v in extra_labels.items()})
    return {"name": name, "namespace": spec.namespace, "labels": meta_labels}


# -- env ----------------------------------------------------------------------------------------


def env_checksum(env: Mapping[str, str]) -> str:
    """Short sha256 of the whole env (sorted, unambiguous encoding); changes with any key or value."""
    canonical = json.dumps(sorted((str(k), str(v)) for k, v in env.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode("ascii")


def env_secret(spec: SandboxSpec) -> Manifest:
    """The Secret holding every env var of the pod, as base64 `data` (replace it as a whole)."""
    for key in spec.env:
        if not _ENV_KEY.fullmatch(key):
            raise ValueError(f"env key {key!r} is not a valid environment variable name")
    meta = _metadata(spec, names.env_secret_name(spec.name), "sandbox")
    meta["annotations"] = {ENV_CHECKSUM_ANNOTATION: spec.pinned_checksum or env_checksum(spec.env)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {key: _b64(value) for key, value in sorted(spec.env.items())},
    }


def secret_values(secret: Mapping[str, Any]) -> dict[str, str]:
    """Decode a Secret object's `data` (base64) and `stringData` into plain strings.

    A value that is not UTF-8 text raises UnicodeDecodeError: a credential is never guessed at.
    """
    data = secret.get("data") or {}
    out = {k: base64.b64decode(v).decode("utf-8") for k, v in data.items()}
    out.update({k: str(v) for k, v in (secret.get("stringData") or {}).items()})
    return out


# -- sandbox ------------------------------------------------------------------------------------

_INIT_HOME_SCRIPT = r"""set -eu
HOME_DIR=/home/fulling
if [ ! -f "$HOME_DIR/.bashrc" ] && [ -f /etc/skel/.bashrc ]; then
  cp /etc/skel/.bashrc "$HOME_DIR/.bashrc"
  chown 1001:1001 "$HOME_DIR/.bashrc"
  chmod 644 "$HOME_DIR/.bashrc"
fi
if [ ! -d "$HOME_DIR/next" ] || [ -z "$(ls -A "$HOME_DIR/next" 2>/dev/null)" ]; then
  if [ ! -d /opt/next-template ]; then
    echo "template /opt/next-template is missing from the image" >&2
    exit 1
  fi
  mkdir -p "$HOME_DIR/next"
  cp -a /opt/next-template/. "$HOME_DIR/next/"
  if [ ! -f "$HOME_DIR/next/package.json" ]; then
    echo "package.json missing after copying the template" >&2
    exit 1
  fi
  chown -R 1001:1001 "$HOME_DIR/next"
  chmod -R u+rwX,g+rX,o+rX "$HOME_DIR/next"
fi
chown 1001:1001 "$HOME_DIR"
"""

_FILEBROWSER_SCRIPT = r"""set -eu
if [ ! -f /database/filebrowser.db ]; then
  filebrowser config init --database /database/filebrowser.db --root /srv --address 0.0.0.0 --port 8080
  filebrowser users add "$FILE_BROWSER_USERNAME" "$FILE_BROWSER_PASSWORD" --perm.admin \
    --database /database/filebrowser.db
fi
exec filebrowser --database /database/filebrowser.db
"""


def _resources(cpu_request: str, memory_request: str, cpu_limit: str, memory_limit: str) -> Manifest:
    return {
        "requests": {"cpu": cpu_request, "memory": memory_request},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


_PROBE_TIMING = {"initialDelaySeconds": 2, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3}

# The terminal is ready when ttyd answers HTTP and accepts the sandbox's own credential (ttyd answers
# 401 without it, so an httpGet probe could only pass with the token written into the spec: instead
# the probe runs in the container, which has the token in its env).
TTYD_PROBE_SCRIPT = (
    f'curl -fsS -o /dev/null --max-time 2 -u "{TTYD_USER}:$TTYD_ACCESS_TOKEN" http://127.0.0.1:{TTYD_PORT}/'
)


def _ttyd_probe() -> Manifest:
    return {"exec": {"command": ["sh", "-c", TTYD_PROBE_SCRIPT]}, **_PROBE_TIMING}


def _http_probe(path: str, port: str) -> Manifest:
    return {"httpGet": {"path": path, "port": port, "scheme": "HTTP"}, **_PROBE_TIMING}


def _storage_number(size: str) -> str:
    """The Sealos claim-template `value` annotation: the number of a size ("10Gi" -> "10")."""
    match = re.match(r"\d+", size)
    return match.group(0) if match else size


def pod_template_annotations(spec: SandboxSpec) -> dict[str, str]:
    return {ENV_CHECKSUM_ANNOTATION: spec.pinned_checksum or env_checksum(spec.env)}


# -- warm pools -----------------------------------------------------------------------------------
# A pool sandbox is started before it has a project, so what a project changes reaches the running pod
# through files on its home volume (written with exec when it is bound), never through the pod template:
# - $HOME/.tenter/env: `export KEY='value'` lines, sourced by the shell (.bashrc) and the agent while
#   the pod is the pool's (TENTER_WARM set; a pod from the project's own template has its env itself);
# - $HOME/.tenter/ttyd-token: the terminal's credential (the probe checks with it; the runtime reads it);
# - $HOME/.tenter/filebrowser: "username:password"; FileBrowser's loop below re-reads it and restarts
#   FileBrowser with it (its database keeps one admin user).
WARM_DIR = ".tenter"
WARM_ENV_FILE = f"{WARM_DIR}/env"
WARM_TTYD_FILE = f"{WARM_DIR}/ttyd-token"
WARM_FILEBROWSER_FILE = f"{WARM_DIR}/filebrowser"
WARM_MARKER = "TENTER_WARM"

WARM_TTYD_PROBE_SCRIPT = (
    f'T=$(cat "{HOME_DIR}/{WARM_TTYD_FILE}" 2>/dev/null || printf %s "$TTYD_ACCESS_TOKEN"); '
    f'curl -fsS -o /dev/null --max-time 2 -u "{TTYD_USER}:$T" http://127.0.0.1:{TTYD_PORT}/'
)

# The runtime image's own start (its entrypoint runs `ttyd -T xterm-256color -W -a -c "user:$TOKEN"
# /usr/local/bin/ttyd-startup.sh`), with the token read from the file binding writes, and ttyd restarted
# when that file changes (nobody is connected to a pool sandbox when it is bound).
_WARM_RUNTIME_SCRIPT = f"""set -u
F="{HOME_DIR}/{WARM_TTYD_FILE}"
token() {{ cat "$F" 2>/dev/null || printf %s "$TTYD_ACCESS_TOKEN"; }}
while true; do
  T=$(token)
  ttyd -T xterm-256color -W -a -c "{TTYD_USER}:$T" /usr/local/bin/ttyd-startup.sh &
  PID=$!
  while kill -0 "$PID" 2>/dev/null; do
    sleep 1
    if [ "$(token)" != "$T" ]; then kill "$PID"; fi
  done
  wait "$PID" 2>/dev/null
  sleep 1
done
"""

_WARM_FILEBROWSER_SCRIPT = r"""set -u
CREDS=/srv/.tenter/filebrowser
DB=/database/filebrowser.db
if [ ! -f "$DB" ]; then
  filebrowser config init --database "$DB" --root /srv --address 0.0.0.0 --port 8080
  filebrowser users add "$FILE_BROWSER_USERNAME" "$FILE_BROWSER_PASSWORD" --perm.admin --database "$DB"
fi
seen=""
while true; do
  now=$(cat "$CREDS" 2>/dev/null || true)
  if [ -n "$now" ] && [ "$now" != "$seen" ]; then
    [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    PID=""
    filebrowser users update 1 --username "${now%%:*}" --password "${now#*:}" --database "$DB"
  fi
  seen=$now
  if [ -z "${PID:-}" ] || ! kill -0 "$PID" 2>/dev/null; then
    filebrowser --database "$DB" & PID=$!
  fi
  sleep 2
done
"""


def env_file(env: Mapping[str, str]) -> str:
    """The env as a shell file of `export KEY='value'` lines (values single-quoted, nothing expanded)."""
    for key in env:
        if not _ENV_KEY.fullmatch(key):
            raise ValueError(f"env key {key!r} is not a valid environment variable name")
    quoted = {key: "'" + str(value).replace("'", "'\\''") + "'" for key, value in env.items()}
    return "".join(f"export {key}={quoted[key]}\n" for key in sorted(quoted))


def statefulset(spec: SandboxSpec) -> Manifest:
    """The sandbox StatefulSet. No env value appears in it: the env comes from the Secret."""
    secret = names.env_secret_name(spec.name)
    claim = names.CLAIM_TEMPLATE
    meta = _metadata(spec, spec.name, "sandbox", app=spec.name)
    meta["annotations"] = {
        "originImageName": spec.image,
        "deploy.cloud.sealos.io/minReplicas": "1",
        "deploy.cloud.sealos.io/maxReplicas": "1",
        "deploy.cloud.sealos.io/resize": spec.storage_size,
    }
    pod_labels = labels(spec, "sandbox")
    if spec.pinned_checksum:  # the template the pool created: no project in it
        pod_labels.pop(PROJECT_LABEL, None)
        pod_labels.pop(FULLING_PROJECT_LABEL, None)
        pod_labels[POOL_LABEL] = _label_value(spec.template_pool, POOL_LABEL)
    pod_labels["app"] = _label_value(spec.name, "app")

    init = {
        "name": "init-home-directory",
        "image": spec.image,
        "imagePullPolicy": "Always",
        "command": ["sh", "-c", _INIT_HOME_SCRIPT],
        "securityContext": {"runAsUser": 0, "runAsNonRoot": False},
        "resources": _resources("200m", "512Mi", "2000m", "4096Mi"),
        "volumeMounts": [{"name": claim, "mountPath": HOME_DIR}],
    }
    main = {
        "name": spec.name,  # the reference finds the runtime container by this name
        "image": spec.image,
        "imagePullPolicy": "Always",
        "ports": [
            {"name": "port-3000", "containerPort": APP_PORT, "protocol": "TCP"},
            {"name": "port-7681", "containerPort": TTYD_PORT, "protocol": "TCP"},
        ],
        "envFrom": [{"secretRef": {"name": secret}}],
        # a pool's pod learns its project's name from the env file when bound, and only a pool's pod
        # reads that file (WARM_MARKER): a pod started from the project's own template has its env
        "env": (
            [{"name": WARM_MARKER, "value": "1"}]
            if spec.pinned_checksum
            else [{"name": "PROJECT_NAME", "value": spec.project_name}]
        ),
        **({"command": ["sh", "-c", _WARM_RUNTIME_SCRIPT]} if spec.pinned_checksum else {}),
        "resources": _resources(spec.cpu_request, spec.memory_request, spec.cpu_limit, spec.memory_limit),
        "readinessProbe": (
            {"exec": {"command": ["sh", "-c", WARM_TTYD_PROBE_SCRIPT]}, **_PROBE_TIMING}
            if spec.pinned_checksum
            else _ttyd_probe()
        ),
        "volumeMounts": [{"name": claim, "mountPath": HOME_DIR}],
    }
    filebrowser = {
        "name": "filebrowser",
        "image": spec.filebrowser_image,
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "/bin/sh",
            "-c",
            _WARM_FILEBROWSER_SCRIPT if spec.pinned_checksum else _FILEBROWSER_SCRIPT,
        ],
        "ports": [{"name": "port-8080", "containerPort": FILEBROWSER_PORT, "protocol": "TCP"}],
        "env": [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for key in (FILE_BROWSER_USERNAME, FILE_BROWSER_PASSWORD)
        ],
        "resources": _resources("50m", "64Mi", "500m", "256Mi"),
        # FileBrowser's own health endpoint: answers once it serves (no login needed)
        "readinessProbe": _http_probe("/health", "port-8080"),
        "volumeMounts": [
            {"name": claim, "mountPath": "/srv"},
            {"name": "filebrowser-database", "mountPath": "/database"},
            {"name": "filebrowser-config", "mountPath": "/config"},
        ],
    }
    claim_spec: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage_size}},
    }
    if spec.storage_class:
        claim_spec["storageClassName"] = spec.storage_class
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta,
        "spec": {
            "replicas": int(spec.replicas),
            "revisionHistoryLimit": 1,
            "serviceName": names.service_name(spec.name),
            "selector": {"matchLabels": selector(spec.name)},
            "updateStrategy": {"type": "RollingUpdate"},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_template_annotations(spec)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": {
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER,
                        "fsGroup": RUN_AS_USER,
                        "runAsNonRoot": True,
                    },
                    **(
                        {"imagePullSecrets": [{"name": n} for n in spec.image_pull_secrets]}
                        if spec.image_pull_secrets
                        else {}
                    ),
                    "initContainers": [init],
                    "containers": [main, filebrowser],
                    "volumes": [
                        {"name": "filebrowser-database", "emptyDir": {}},
                        {"name": "filebrowser-config", "emptyDir": {}},
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {
                        "name": claim,
                        # the PVC carries our labels, so the orphan sweep finds it by its owner
                        "labels": labels(spec, "sandbox"),
                        "annotations": {"path": HOME_DIR, "value": _storage_number(spec.storage_size)},
                    },
                    "spec": claim_spec,
                }
            ],
        },
    }


def service(spec: SandboxSpec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, names.service_name(spec.name), "sandbox"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec.name),
            "ports": [
                {"name": f"port-{port}", "port": port, "targetPort": port, "protocol": "TCP"}
                for port in (APP_PORT, TTYD_PORT, FILEBROWSER_PORT)
            ],
        },
    }


_CORS_HEADERS = (
    "DNT, Keep-Alive, User-Agent, X-Requested-With, If-Modified-Since, Cache-Control, Content-Type, Range, "
    "Authorization, X-Auth, Upload-Length, Upload-Offset, Tus-Resumable, Upload-Metadata, "
    "Upload-Defer-Length, Upload-Concat"
)
_CORS_EXPOSE = (
    "Upload-Offset, Location, Upload-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, Tus-Extension, "
    "Upload-Metadata"
)


def _ingress_annotations(spec: SandboxSpec, kind: str) -> dict[str, str]:
    nginx = "nginx.ingress.kubernetes.io/"
    out = {
        "kubernetes.io/ingress.class": spec.ingress_class,
        nginx + "proxy-body-size": "32m",
        nginx + "ssl-redirect": "false",
        nginx + "backend-protocol": "HTTP",
        nginx + "client-body-buffer-size": "64k",
        nginx + "proxy-buffer-size": "64k",
        nginx + "proxy-send-timeout": "300",
        nginx + "proxy-read-timeout": "300",
    }
    if spec.ingress_snippets:
        out[nginx + "server-snippet"] = "client_header_buffer_size 64k;\nlarge_client_header_buffers 4 128k;"
    out.update(spec.ingress_annotations)
    if kind == "filebrowser":
        out.update(
            {
                nginx + "enable-cors": "true",
                nginx + "cors-allow-origin": "*",
                nginx + "cors-allow-methods": "GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS",
                nginx + "cors-allow-headers": _CORS_HEADERS,
                nginx + "cors-expose-headers": _CORS_EXPOSE,
                nginx + "cors-allow-credentials": "true",
                nginx + "cors-max-age": "1728000",
            }
        )
    return out


def ingress(spec: SandboxSpec, kind: str) -> Manifest:
    """One of the three Ingresses (kind: app, ttyd or filebrowser)."""
    host = names.host_for(spec.name, kind, spec.domain)
    meta = _metadata(spec, names.ingress_name(spec.name, kind), "sandbox")
    meta["labels"][SEALOS_DOMAIN_LABEL] = _label_value(f"{spec.name}-{kind}", SEALOS_DOMAIN_LABEL)
    meta["annotations"] = _ingress_annotations(spec, kind)
    tls: Manifest = {"hosts": [host]}
    if spec.tls_secret_name:
        tls["secretName"] = spec.tls_secret_name
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,
        "spec": {
            "ingressClassName": spec.ingress_class,
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {
                                        "name": names.service_name(spec.name),
                                        "port": {"number": INGRESS_PORTS[kind]},
                                    }
                                },
                            }
                        ]
                    },
                }
            ],
            "tls": [tls],
        },
    }


def ingresses(spec: SandboxSpec) -> list[Manifest]:
    if spec.pool_id:  # an idle pool member has no public hosts until it is bound
        return []
    return [ingress(spec, kind) for kind in names.INGRESS_KINDS]


def sandbox_objects(spec: SandboxSpec) -> list[Manifest]:
    """Every object of a sandbox, in apply order (the Secret before the pod that needs it)."""
    return [env_secret(spec), service(spec), statefulset(spec), *ingresses(spec)]


def sandbox_object_refs(name: str) -> list[tuple[str, str]]:
    """(kind, name) of every object a sandbox may own, in delete order (PVC last)."""
    return [
        ("StatefulSet", name),
        *[("Ingress", ingress_name) for ingress_name in names.ingress_names(name)],
        ("Service", names.service_name(name)),
        ("Secret", names.env_secret_name(name)),
        ("PersistentVolumeClaim", names.pvc_name(name)),
    ]


def terminal_authorization(terminal_token: str) -> str:
    """The `authorization` query value of the ttyd URL: base64("user:{token}"), '+' percent-encoded."""
    raw = base64.b64encode(f"{TTYD_USER}:{terminal_token}".encode()).decode("ascii")
    return quote(raw, safe="/=")


def urls(name: str, domain: str) -> dict[str, str]:
    """Public URLs of a sandbox (the ttyd one without its token: see `terminal_authorization`)."""
    return {
        "public_url": f"https://{names.app_host(name, domain)}",
        "ttyd_url": f"https://{names.ttyd_host(name, domain)}",
        "filebrowser_url": f"https://{names.filebrowser_host(name, domain)}",
    }


def statefulset_ready(obj: Mapping[str, Any]) -> bool:
    """Has the controller acted on the latest spec, with every wanted replica ready and up to date?

    `observedGeneration >= generation` first (a fresh `readyReplicas` of an older generation says
    nothing about the new spec), then ready == wanted; when running, the rollout must also be done.
    Stopped (replicas 0) means no pods left.
    """
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    wanted = 1 if spec.get("replicas") is None else int(spec["replicas"])
    if int(status.get("replicas") or 0) != wanted or int(status.get("readyReplicas") or 0) != wanted:
        return False
    if wanted == 0:
        return True
    if int(status.get("updatedReplicas") or 0) != wanted:
        return False
    update_rev, current_rev = status.get("updateRevision"), status.get("currentRevision")
    return not (update_rev and current_rev and update_rev != current_rev)


# -- database -----------------------------------------------------------------------------------


def _db_version_tag(spec: DatabaseSpec) -> str:
    return f"postgresql-{spec.postgres_version}"


def database_cluster(spec: DatabaseSpec) -> Manifest:
    """The KubeBlocks PostgreSQL Cluster in the spec's apiVersion (v1: KubeBlocks 1.x, v1alpha1: 0.9)."""
    meta = _metadata(spec, spec.name, "database")
    claim_spec: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage_size}},
    }
    if spec.storage_class:
        claim_spec["storageClassName"] = spec.storage_class
    component: Manifest = {"name": POSTGRES_COMPONENT}
    if spec.api_version == KUBEBLOCKS_V1ALPHA1:
        component["componentDefRef"] = POSTGRES_COMPONENT
    else:
        component["serviceVersion"] = spec.postgres_version
    component.update(
        {
            "replicas": int(spec.replicas),
            "resources": _resources(spec.cpu_request, spec.memory_request, spec.cpu_limit, spec.memory_limit),
            "volumeClaimTemplates": [{"name": "data", "spec": claim_spec}],
        }
    )
    if spec.stopped:
        component["stop"] = True
    cluster_spec: Manifest
    if spec.api_version == KUBEBLOCKS_V1ALPHA1:
        meta["labels"]["clusterversion.kubeblocks.io/name"] = _label_value(
            _db_version_tag(spec), "clusterversion.kubeblocks.io/name"
        )
        cluster_spec = {
            "clusterDefinitionRef": "postgresql",
            "clusterVersionRef": _db_version_tag(spec),
            "terminationPolicy": "Delete",
            "affinity": {
                "podAntiAffinity": "Preferred",
                "tenancy": "SharedNode",
                "topologyKeys": ["kubernetes.io/hostname"],
            },
            "tolerations": [],
            "componentSpecs": [component],
        }
    else:
        cluster_spec = {
            "clusterDef": "postgresql",
            "topology": "replication",
            "terminationPolicy": "Delete",
            "componentSpecs": [component],
        }
    return {"apiVersion": spec.api_version, "kind": "Cluster", "metadata": meta, "spec": cluster_spec}


def database_stop_patch(spec: DatabaseSpec, stopped: bool) -> list[Manifest]:
    """A JSON patch (patch_type "json") setting `componentSpecs[0].stop`.

    The `test` op makes the patch fail (422) rather than touch another component if the array was
    reordered behind our back. `add` on an object member creates or replaces it.
    """
    return [
        {"op": "test", "path": "/spec/componentSpecs/0/name", "value": POSTGRES_COMPONENT},
        {"op": "add", "path": "/spec/componentSpecs/0/stop", "value": bool(stopped)},
    ]


def database_url(user: str, password: str, host: str, port: int | str, dbname: str = "postgres") -> str:
    """postgresql:// URL with the user, password and database name percent-encoded."""
    return (
        f"postgresql://{quote(str(user), safe='')}:{quote(str(password), safe='')}"
        f"@{host}:{port}/{quote(str(dbname), safe='')}"
    )


def database_connection(
    cluster: str, namespace: str, account_secret: Mapping[str, Any], dbname: str = "postgres"
) -> dict[str, Any] | None:
    """Connection info from the KubeBlocks account Secret object; None while it has no credentials yet."""
    values = secret_values(account_secret)
    user, password = values.get("username", ""), values.get("password", "")
    if not user or not password:
        return None
    host = names.db_host(cluster, namespace)
    return {
        "host": host,
        "port": POSTGRES_PORT,
        "username": user,
        "password": password,
        "database": dbname,
        "url": database_url(user, password, host, POSTGRES_PORT, dbname),
    }
