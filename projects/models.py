import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower

from core.crypto import EncryptedTextField
from core.quantities import BadQuantity, bytes_of, millicores

PROJECT_NAME_MAX = 63
ENV_KEY_MAX = 256
ENV_KEY_REGEX = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ProjectStatus(models.TextChoices):
    CREATING = "CREATING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    UPDATING = "UPDATING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"
    PARTIAL = "PARTIAL"


class PoolPolicy(models.Model):
    """A warm pool operators define: keep `target` idle, RUNNING sandboxes of this image and size ready
    for every user who has not opted out (User.warm_pool), in the user's own namespace. A project create
    whose image and size match takes one of them (see projects/pools.py)."""

    image = models.CharField(max_length=300, help_text="Runtime image, as in settings.RUNTIME_IMAGE.")
    size = models.CharField(max_length=32, help_text="A size of settings.SANDBOX_SIZES.")
    target = models.PositiveIntegerField(default=1, help_text="Idle sandboxes to keep per user.")
    enabled = models.BooleanField(default=True)
    # Optional schedule, in UTC hours: refill only when start <= hour < end (or, with start > end, across
    # midnight). Both empty: always.
    start_hour = models.PositiveSmallIntegerField(null=True, blank=True)
    end_hour = models.PositiveSmallIntegerField(null=True, blank=True)
    claims = models.PositiveBigIntegerField(default=0, help_text="Creates served from the pool.")
    misses = models.PositiveBigIntegerField(default=0, help_text="Matching creates that found it empty.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "pool policies"
        ordering = ["image", "size"]
        constraints = [
            models.UniqueConstraint(fields=["image", "size"], name="poolpolicy_unique_image_size"),
            models.CheckConstraint(
                condition=(models.Q(start_hour__isnull=True) & models.Q(end_hour__isnull=True))
                | (models.Q(start_hour__lte=23) & models.Q(end_hour__lte=24)),
                name="poolpolicy_schedule_hours",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.image} {self.size} x{self.target}"

    def in_schedule(self, hour: int) -> bool:
        if self.start_hour is None or self.end_hour is None:
            return True
        if self.start_hour <= self.end_hour:
            return self.start_hour <= hour < self.end_hour
        return hour >= self.start_hour or hour < self.end_hour


class ProjectManager(models.Manager["Project"]):
    """Real projects only: a warm pool's hidden projects (pool set) are left out of every list, count,
    quota, API, dashboard and admin screen. `Project.all_objects` has them too."""

    def get_queryset(self) -> models.QuerySet["Project"]:
        return super().get_queryset().filter(pool__isnull=True)


class Project(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=PROJECT_NAME_MAX)
    description = models.TextField(blank=True, default="")
    # Aggregated from the resources (projects/status.py); never set by hand.
    status = models.CharField(max_length=16, choices=ProjectStatus.choices, default=ProjectStatus.CREATING)
    status_changed_at = models.DateTimeField(auto_now_add=True)
    github_installation = models.ForeignKey(
        "github.GitHubInstallation", on_delete=models.SET_NULL, null=True, blank=True, related_name="projects"
    )
    github_repo_full_name = models.CharField(max_length=200, blank=True, default="")
    github_repo_id = models.BigIntegerField(null=True, blank=True)
    github_default_branch = models.CharField(max_length=200, blank=True, default="")
    # Stop the sandbox after this many minutes without activity: None = the default (IDLE_STOP_MINUTES),
    # 0 = never.
    idle_stop_minutes = models.PositiveIntegerField(null=True, blank=True)
    # Set while the project is a warm pool's idle member (hidden, see ProjectManager); cleared when a
    # create binds it to the user's project.
    pool = models.ForeignKey(
        PoolPolicy, on_delete=models.PROTECT, null=True, blank=True, related_name="members"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProjectManager()
    all_objects: models.Manager["Project"] = models.Manager()

    class Meta:
        base_manager_name = "all_objects"
        ordering = ["-created_at"]
        constraints = [
            # "Web Shop" and "web shop" are the same project to a person: unique whatever the case.
            models.UniqueConstraint("owner", Lower("name"), name="project_unique_owner_lower_name"),
            models.CheckConstraint(
                condition=models.Q(status__in=ProjectStatus.values), name="project_status_allowed"
            ),
        ]
        indexes = [models.Index(fields=["owner", "-created_at"], name="project_owner_created")]

    def __str__(self) -> str:
        return self.name


def _cpu_quantity(value: str) -> None:
    try:
        millicores(value)
    except BadQuantity as exc:
        raise ValidationError(str(exc)) from None


def _memory_quantity(value: str) -> None:
    try:
        bytes_of(value)
    except BadQuantity as exc:
        raise ValidationError(str(exc)) from None


class Quota(models.Model):
    """A user's own limits. An empty field means the default in settings (QUOTA_MAX_*)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota")
    max_projects = models.PositiveIntegerField(null=True, blank=True)
    max_running_sandboxes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Sandboxes RUNNING, STARTING, CREATING or UPDATING."
    )
    max_databases = models.PositiveIntegerField(null=True, blank=True)
    max_cpu = models.CharField(
        max_length=16,
        null=True,
        blank=True,
        validators=[_cpu_quantity],
        help_text="Total CPU requested by sandboxes and databases, e.g. 8 or 4500m.",
    )
    max_memory = models.CharField(
        max_length=16,
        null=True,
        blank=True,
        validators=[_memory_quantity],
        help_text="Total memory requested by sandboxes and databases, e.g. 16Gi.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Quota of {self.user}"


class EnvCategory(models.TextChoices):
    GENERAL = "general"
    SECRET = "secret"
    AUTH = "auth"
    PAYMENT = "payment"
    TTYD = "ttyd"
    FILE_BROWSER = "file_browser"
    DATABASE = "database"


class Environment(models.Model):
    """A project environment variable. Values are encrypted at rest; system rows are Tenter's own."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="environment")
    key = models.CharField(max_length=ENV_KEY_MAX)
    value = EncryptedTextField(blank=True)
    category = models.CharField(max_length=16, choices=EnvCategory.choices, default=EnvCategory.GENERAL)
    is_secret = models.BooleanField(default=False)
    is_system = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "key"], name="environment_unique_project_key"),
            models.CheckConstraint(
                condition=models.Q(key__regex=ENV_KEY_REGEX), name="environment_key_posix"
            ),
        ]

    def __str__(self) -> str:
        return self.key


class TaskType(models.TextChoices):
    CLONE_REPOSITORY = "CLONE_REPOSITORY"
    INSTALL_SKILL = "INSTALL_SKILL"
    UNINSTALL_SKILL = "UNINSTALL_SKILL"
    DEPLOY_PROJECT = "DEPLOY_PROJECT"


class TaskStatus(models.TextChoices):
    PENDING = "PENDING"
    WAITING_FOR_PREREQUISITES = "WAITING_FOR_PREREQUISITES"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TASK_ACTIVE_STATUSES = [TaskStatus.PENDING, TaskStatus.WAITING_FOR_PREREQUISITES, TaskStatus.RUNNING]


class Skill(models.Model):
    """An entry of the skills catalog operators manage in the admin. What a user enables is snapshotted
    (UserSkill), so editing an entry never changes a rollout under way."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    source_url = models.URLField(blank=True, default="")
    install_command = models.TextField(help_text="Run with sh in the project folder; must be idempotent.")
    uninstall_command = models.TextField(help_text="Run with sh in the project folder; must be idempotent.")
    enabled = models.BooleanField(default=True, help_text="Offered in the catalog.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class UserSkill(models.Model):
    """A skill a user enabled for all their projects, with the commands as they were when enabled."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="skills")
    skill = models.ForeignKey(Skill, on_delete=models.CASCADE, related_name="users")
    install_command = models.TextField()
    uninstall_command = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "skill"], name="userskill_unique_user_skill")]

    def __str__(self) -> str:
        return f"{self.skill_id} for {self.user_id}"


class ProjectTask(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    skill = models.ForeignKey(Skill, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks")
    sandbox = models.ForeignKey(
        "sandboxes.Sandbox", on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    type = models.CharField(max_length=32, choices=TaskType.choices)
    status = models.CharField(max_length=32, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    payload = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    status_reason = models.CharField(max_length=500, blank=True, default="")  # e.g. what it waits for
    error = models.TextField(blank=True, default="")  # the last failure
    output = models.TextField(blank=True, default="")  # the last attempt's output tail, redacted
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    locked_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=TaskStatus.values), name="task_status_allowed"
            ),
            models.CheckConstraint(condition=models.Q(type__in=TaskType.values), name="task_type_allowed"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at", "created_at"],
                name="task_sweep",
                condition=models.Q(status__in=TASK_ACTIVE_STATUSES),
            ),
            models.Index(fields=["project", "skill", "-created_at"], name="task_project_skill"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.status}"


class ProjectTaskAttempt(models.Model):
    """One run of a task's script. (task, number) is unique: one attempt never runs twice."""

    task = models.ForeignKey(ProjectTask, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)  # seconds
    exit_code = models.IntegerField(null=True, blank=True)
    output = models.TextField(blank=True, default="")  # output tail, secrets redacted
    error = models.TextField(blank=True, default="")
    lease_token = models.UUIDField()

    class Meta:
        ordering = ["task", "number"]
        constraints = [
            models.UniqueConstraint(fields=["task", "number"], name="taskattempt_unique_number"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}"
