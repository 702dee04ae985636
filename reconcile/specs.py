"""What the manifests are built from: plain frozen values, no Django, no Kubernetes client.

A reconciler turns a Sandbox/Database row (plus its project's env) into one of these, and
`reconcile.manifests` turns that into object dicts. Keeping this layer free of models makes the
manifests pure functions that tests can call with literals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

KUBEBLOCKS_V1 = "apps.kubeblocks.io/v1"
KUBEBLOCKS_V1ALPHA1 = "apps.kubeblocks.io/v1alpha1"
KUBEBLOCKS_API_VERSIONS = (KUBEBLOCKS_V1, KUBEBLOCKS_V1ALPHA1)


def _frozen_env(env: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType({str(k): str(v) for k, v in dict(env).items()})


@dataclass(frozen=True)
class SandboxSpec:
    namespace: str
    name: str  # StatefulSet name, e.g. "my-app-abcdefgh"
    project_id: str  # project primary key as a string (UUID)
    project_slug: str
    project_name: str  # display name (PROJECT_NAME env)
    resource_id: str  # sandbox primary key as a string
    owner_id: str  # user id as a string
    image: str
    filebrowser_image: str
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    storage_size: str  # "10Gi"
    domain: str  # ingress domain
    replicas: int  # 1 running, 0 stopped
    env: Mapping[str, str] = field(default_factory=dict)  # every env var of the pod, secrets included
    tls_secret_name: str = "wildcard-cert"
    ingress_class: str = "nginx"
    # ingress-nginx may forbid snippet annotations (allow-snippet-annotations=false, the default since
    # controller 1.9); then its admission webhook rejects Ingresses that carry one.
    ingress_snippets: bool = True
    storage_class: str = ""  # empty = the cluster's default StorageClass
    ingress_annotations: Mapping[str, str] = field(default_factory=dict)  # extra, added to every Ingress
    image_pull_secrets: tuple[str, ...] = ()  # Secrets in the namespace to pull the images with
    # Warm pools: `pool_id` is set while the sandbox is a pool's idle member (its objects carry the pool
    # label instead of the project's, and it has no Ingresses). `pinned_checksum` is set while the pod
    # template is the one the pool created (pool labels `template_pool`, the pool's env checksum, the
    # credentials read from files): binding to a project then changes no byte of the pod template.
    pool_id: str = ""
    template_pool: str = ""
    pinned_checksum: str = ""

    def __post_init__(self) -> None:
        # A read-only copy: the spec is hashable-ish and nobody mutates the env behind our back.
        object.__setattr__(self, "env", _frozen_env(self.env))
        object.__setattr__(self, "ingress_annotations", _frozen_env(self.ingress_annotations))
        object.__setattr__(self, "image_pull_secrets", tuple(self.image_pull_secrets))
        for attr in ("project_id", "resource_id", "owner_id"):
            object.__setattr__(self, attr, str(getattr(self, attr)))


@dataclass(frozen=True)
class DatabaseSpec:
    namespace: str
    name: str  # KubeBlocks cluster name
    project_id: str
    project_slug: str
    resource_id: str
    owner_id: str
    api_version: str = KUBEBLOCKS_V1  # or KUBEBLOCKS_V1ALPHA1 for KubeBlocks 0.9 (Sealos)
    cpu_request: str = "100m"
    cpu_limit: str = "1000m"
    memory_request: str = "102Mi"
    memory_limit: str = "1024Mi"
    storage_size: str = "3Gi"
    storage_class: str = ""  # empty = the cluster's default StorageClass
    postgres_version: str = "14.8.0"
    replicas: int = 1
    stopped: bool = False

    def __post_init__(self) -> None:
        if self.api_version not in KUBEBLOCKS_API_VERSIONS:
            raise ValueError(
                f"unsupported KubeBlocks apiVersion {self.api_version!r}; "
                f"expected one of {', '.join(KUBEBLOCKS_API_VERSIONS)}"
            )
        for attr in ("project_id", "resource_id", "owner_id"):
            object.__setattr__(self, attr, str(getattr(self, attr)))
