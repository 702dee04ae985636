import uuid
from datetime import datetime, timedelta
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.utils import timezone

from core.audit import ActorKind
from core.crypto import EncryptedTextField


class ResourceStatus(models.TextChoices):
    CREATING = "CREATING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    UPDATING = "UPDATING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"


class ResourceKind(models.TextChoices):
    SANDBOX = "sandbox"
    DATABASE = "database"
    PROJECT = "project"


# The groups of statuses every part of Tenter uses (engine, services, admin, metrics, dashboard).
# "Work to do": the reconciler moves these to a stable status.
TRANSITIONAL = (
    ResourceStatus.CREATING,
    ResourceStatus.STARTING,
    ResourceStatus.UPDATING,
    ResourceStatus.STOPPING,
    ResourceStatus.TERMINATING,
)
STABLE = (ResourceStatus.RUNNING, ResourceStatus.STOPPED)
# A retry of an ERROR row resumes the step it failed in when it was one of these (else it starts).
RESUMABLE = frozenset({ResourceStatus.CREATING, ResourceStatus.STARTING, ResourceStatus.UPDATING})
STOPPABLE = frozenset({ResourceStatus.RUNNING, ResourceStatus.STARTING, ResourceStatus.ERROR})
# Resources in these statuses block a project's start and stop (they must settle first).
BLOCKING = frozenset(
    {ResourceStatus.CREATING, ResourceStatus.UPDATING, ResourceStatus.TERMINATING, ResourceStatus.TERMINATED}
)


def past_deadline_q(now: datetime | None = None, prefix: str = "") -> models.Q:
    """Rows whose current status has a deadline (settings.STATUS_DEADLINES) that has passed: the one
    definition the deadline sweep, the metrics and the admin all use."""
    now = now or timezone.now()
    q = models.Q(pk__in=[])
    for status, limit in settings.STATUS_DEADLINES.items():
        # time in the status, less the time spent waiting for a usable kubeconfig, is over the limit
        started_by = models.ExpressionWrapper(
            models.Value(now - limit) - models.F(f"{prefix}paused"), output_field=models.DateTimeField()
        )
        q |= models.Q(
            **{f"{prefix}status": status, f"{prefix}status_changed_at__lt": started_by},
            **{f"{prefix}waiting_since__isnull": True},
        )
    # waiting for a usable kubeconfig has its own deadline, whatever the status
    q |= models.Q(
        **{
            f"{prefix}status__in": TRANSITIONAL,
            f"{prefix}waiting_since__lt": now - settings.KUBECONFIG_WAIT_DEADLINE,
        }
    )
    return q


def lease_held_q(now: datetime | None = None) -> models.Q:
    """Rows a worker holds a reconcile lease on right now."""
    return models.Q(locked_until__gt=now or timezone.now())


class Resource(models.Model):
    """What a sandbox and a database share: identity on the cluster, status, and the reconcile lease."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=63)
    k8s_namespace = models.CharField(max_length=63)
    k8s_name = models.CharField(max_length=63)
    # The cluster the objects live on (the kubeconfig's server host when the row was created): steps
    # only act there, so a 404 from another cluster can never be mistaken for "gone".
    k8s_server = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16, choices=ResourceStatus.choices, default=ResourceStatus.CREATING)
    status_reason = models.TextField(blank=True, default="")
    status_changed_at = models.DateTimeField(auto_now_add=True)
    # In ERROR: the status it failed in, so "retry" resumes the failed step.
    failed_status = models.CharField(max_length=16, blank=True, default="")
    # Reconcile lease: a claim stamps both; results are written only while the token still matches.
    locked_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Waiting for a usable kubeconfig stops the status's deadline clock: since when this wait began,
    # and how long earlier waits in the current status lasted (reset on every status change).
    waiting_since = models.DateTimeField(null=True, blank=True)
    paused = models.DurationField(default=timedelta(0))
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # Desired configuration version, bumped by every config change; observed = last applied.
    generation = models.PositiveIntegerField(default=1)
    observed_generation = models.PositiveIntegerField(default=0)
    last_observed_at = models.DateTimeField(null=True, blank=True)
    # Health of a stable row, from the verification sweep (reconcile/health.py): a RUNNING resource
    # whose pod stopped being ready is "degraded" (non-empty reason) until it recovers; its status stays
    # RUNNING, because nothing is asked of the reconciler and every action stays what it was.
    degraded_reason = models.TextField(blank=True, default="")
    degraded_since = models.DateTimeField(null=True, blank=True)
    # What the verification sweep saw of the resource's objects when it took its baseline (per status
    # change and generation): {"key": ..., "objects": {"Kind/name": fingerprint}}.
    observed_objects = models.JSONField(default=dict, blank=True)
    cpu_request = models.CharField(max_length=16)
    cpu_limit = models.CharField(max_length=16)
    memory_request = models.CharField(max_length=16)
    memory_limit = models.CharField(max_length=16)
    storage_size = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    resource_kind: ClassVar[str]  # ResourceKind of the concrete model

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.k8s_namespace}/{self.k8s_name}"

    @property
    def is_transitional(self) -> bool:
        return self.status in TRANSITIONAL

    @property
    def is_degraded(self) -> bool:
        return self.status == ResourceStatus.RUNNING and bool(self.degraded_reason)


def _resource_constraints(prefix: str) -> list[models.BaseConstraint]:
    return [
        models.UniqueConstraint(fields=["k8s_namespace", "k8s_name"], name=f"{prefix}_unique_k8s_name"),
        models.CheckConstraint(
            condition=models.Q(status__in=ResourceStatus.values), name=f"{prefix}_status_allowed"
        ),
    ]


def _resource_indexes(prefix: str) -> list[models.Index]:
    return [
        # The claim query: transitional rows, oldest due first.
        models.Index(
            fields=["next_attempt_at", "status_changed_at"],
            name=f"{prefix}_claim",
            condition=models.Q(status__in=TRANSITIONAL),
        ),
        # Drift checks and idle stop look at stable rows.
        models.Index(
            fields=["last_observed_at"], name=f"{prefix}_stable", condition=models.Q(status__in=STABLE)
        ),
        models.Index(
            fields=["status_changed_at"], name=f"{prefix}_errors", condition=models.Q(status="ERROR")
        ),
    ]


class Sandbox(Resource):
    resource_kind: ClassVar[str] = ResourceKind.SANDBOX
    # Not a column: the env the reconciler loaded for a claimed batch before its steps ran (None: read it).
    prepared_env: dict[str, str] | None = None
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="sandboxes")
    image = models.CharField(max_length=300)
    public_url = models.CharField(max_length=300, blank=True, default="")
    ttyd_url = models.CharField(max_length=300, blank=True, default="")  # without the token
    filebrowser_url = models.CharField(max_length=300, blank=True, default="")
    ingress_domain = models.CharField(max_length=253, blank=True, default="")
    last_activity_at = models.DateTimeField(null=True, blank=True)
    # The name of its size in settings.SANDBOX_SIZES (the requests and limits above are that size's).
    size = models.CharField(max_length=32, default="small")
    # Warm pools (projects/pools.py): the policy a pool-born sandbox was started for, the pool label its
    # pod template was created with, and the env checksum pinned in that template. While pinned, the pod
    # template stays what it was in the pool, so binding it to a project never restarts the pod; an env
    # change of the project clears the pin (and then rolls the pod as for any sandbox).
    pool_policy = models.ForeignKey(
        "projects.PoolPolicy", on_delete=models.SET_NULL, null=True, blank=True, related_name="sandboxes"
    )
    pool_label = models.CharField(max_length=63, blank=True, default="")
    pinned_checksum = models.CharField(max_length=64, blank=True, default="")
    # Claimed by a create: the next UPDATING step binds it (labels, Ingresses, env, credentials).
    binding = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "sandboxes"
        ordering = ["created_at"]
        constraints = [
            *_resource_constraints("sandbox"),
            models.UniqueConstraint(fields=["project", "name"], name="sandbox_unique_project_name"),
        ]
        indexes = _resource_indexes("sandbox")


class Database(Resource):
    resource_kind: ClassVar[str] = ResourceKind.DATABASE
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="databases")
    api_version = models.CharField(max_length=64)
    host = models.CharField(max_length=253, blank=True, default="")
    port = models.PositiveIntegerField(null=True, blank=True)
    database_name = models.CharField(max_length=63, blank=True, default="postgres")
    # The environment variable the project's sandboxes get the database's URL in (DATABASE_URL unless
    # the user keeps their own DATABASE_URL and chose another name when adding the database).
    url_env_key = models.CharField(max_length=128, default="DATABASE_URL")
    username = models.CharField(max_length=63, blank=True, default="")
    password = EncryptedTextField(blank=True, default="")

    class Meta:
        ordering = ["created_at"]
        constraints = [
            *_resource_constraints("database"),
            models.UniqueConstraint(fields=["project", "name"], name="database_unique_project_name"),
        ]
        indexes = _resource_indexes("database")

    @property
    def is_connection_ready(self) -> bool:
        return bool(self.host and self.username and self.password)


class ResourceEvent(models.Model):
    """Append-only timeline. Kept when the resource row is gone (no foreign key to it)."""

    project = models.ForeignKey(
        "projects.Project", on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    project_name = models.CharField(max_length=63, blank=True, default="")
    resource_kind = models.CharField(max_length=16, choices=ResourceKind.choices)
    resource_id = models.UUIDField(null=True, blank=True)
    resource_name = models.CharField(max_length=63, blank=True, default="")
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16, blank=True, default="")
    reason = models.CharField(max_length=64, blank=True, default="")
    message = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="event_project_timeline"),
            models.Index(fields=["resource_id", "-created_at"], name="event_resource_timeline"),
        ]

    def __str__(self) -> str:
        return f"{self.resource_kind} {self.from_status}->{self.to_status}"


class OrphanObject(models.Model):
    """An object in a user's namespace labelled as Tenter's and that user's, whose row is gone: reported
    by the orphan sweep (reconcile/drift.py) when first seen, deleted once it has been reported for
    settings.ORPHAN_DELETE_AFTER_MINUTES (0 = report only). Kept after deletion as the record of it."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    namespace = models.CharField(max_length=63)
    kind = models.CharField(max_length=32)
    name = models.CharField(max_length=253)
    uid = models.CharField(max_length=64)
    resource_id = models.CharField(max_length=64, blank=True, default="")  # the row it was labelled for
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-first_seen_at"]
        constraints = [models.UniqueConstraint(fields=["owner", "uid"], name="orphan_unique_owner_uid")]
        indexes = [
            models.Index(fields=["last_seen_at"], name="orphan_pending", condition=models.Q(deleted_at=None))
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"
