"""Warm pools: keeping each opted-in user's pool at its policy's target, opting in and out, and setting
policies. A pool's idle member is a hidden project (Project.pool set) whose one sandbox is started like
any other (CREATING -> STARTING -> RUNNING) but labelled as the pool's, with no Ingresses and a pinned
pod template (reconcile/manifests.py). Creates take members in projects/services.py (`_claim_warm`);
the reconciler binds them (reconcile/warm.py). A member is bound once and never returns to the pool.

Decisions: users are opted in by default (User.warm_pool), which only has an effect where an operator
defined a policy; members count against the user's quota (sandboxes, CPU, memory; not projects, they are
not projects yet); refilling leaves room for one more sandbox of the policy's size, so a create the pool
cannot serve still fits, and a create that binds a member counts only the project (its sandbox is already
counted); refill needs a kubeconfig whose cluster check passed.
"""

import secrets
import string
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from core import audit
from core import kick as kicks
from core.audit import Actor
from core.errors import InvalidState, QuotaExceeded, ValidationFailed
from core.quantities import bytes_of, millicores
from projects import services
from projects.models import Environment, PoolPolicy, Project
from projects.transitions import add_event
from reconcile import names
from sandboxes.models import ResourceStatus, Sandbox
from userconfig.models import CheckStatus, ConfigKey, User, UserConfig

# At most this many members are created per user and policy in one refill round (the sweep comes back).
REFILL_BATCH = 4
# Statuses of a member that will become (or is) an idle RUNNING sandbox: they count towards the target.
FILLING = (ResourceStatus.CREATING, ResourceStatus.STARTING, ResourceStatus.RUNNING, ResourceStatus.UPDATING)


def _member_name() -> str:
    # Not a name a user can give a project (they start with a letter), so it never takes one of theirs.
    return "~warm " + "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))


def offered() -> bool:
    """Is any warm pool policy enabled (the Settings page says so)?"""
    return PoolPolicy.objects.filter(enabled=True, target__gt=0).exists()


def idle_members(*, user: User | None = None, policy: PoolPolicy | None = None) -> Any:
    """The hidden projects of pools (with their owner), optionally of one user or policy."""
    rows = Project.all_objects.filter(pool__isnull=False)
    if user is not None:
        rows = rows.filter(owner=user)
    if policy is not None:
        rows = rows.filter(pool=policy)
    return rows


def idle_count(*, user: User) -> int:
    """The user's idle RUNNING members, all policies."""
    return Sandbox.objects.filter(
        project__owner=user, project__pool__isnull=False, status=ResourceStatus.RUNNING, binding=False
    ).count()


def with_idle(policies: Any = None) -> Any:
    """Policies annotated with `idle_now`: their idle RUNNING members (not being bound), counted in the
    same query (admin list and /metrics)."""
    policies = PoolPolicy.objects.all() if policies is None else policies
    idle = Q(members__sandboxes__status=ResourceStatus.RUNNING, members__sandboxes__binding=False)
    return policies.annotate(idle_now=Count("members__sandboxes", filter=idle))


def refill_user(*, user: User, policy: PoolPolicy, actor: Actor, batch: int = REFILL_BATCH) -> int:
    """Create members for `user` up to the policy's target (at most `batch`), within their quota.
    Returns how many were created."""
    kubeconfig = (
        UserConfig.objects.filter(user=user, key=ConfigKey.KUBECONFIG, check_status=CheckStatus.OK)
        .defer("value")
        .first()
    )
    if kubeconfig is None or not user.warm_pool or not policy.enabled:
        return 0
    size_name, resources = services.sandbox_size(policy.size)
    domain = names.ingress_domain(kubeconfig.server, settings.INGRESS_DOMAIN)
    # A member that failed (ERROR: its deadline passed, its pod cannot start) is of no use: delete it, so
    # it neither holds quota nor counts towards the target.
    failed = idle_members(user=user, policy=policy).filter(sandboxes__status=ResourceStatus.ERROR)
    for pk in list(failed.values_list("pk", flat=True)):
        _delete_member(pk, actor)
    created = 0
    with transaction.atomic():
        services.lock_quota(user.pk)
        # under the user's lock, as opting out takes it: no member is created after an opt-out's drain
        if not User.objects.filter(pk=user.pk, warm_pool=True).exists():
            return 0
        have = (
            Sandbox.objects.filter(project__owner=user, project__pool=policy, status__in=FILLING)
            .values("pk")
            .count()
        )
        for _ in range(min(batch, max(0, policy.target - have))):
            try:
                # Room for this member and one sandbox more: a pool never takes the last of a user's
                # quota, so a create the pool cannot serve (another size, an empty pool) still fits.
                services.check_quota(
                    user.pk,
                    running_sandboxes=2,
                    cpu=2 * millicores(resources["cpu_request"]),
                    memory=2 * bytes_of(resources["memory_request"]),
                )
            except QuotaExceeded:
                break
            try:
                with transaction.atomic():
                    _create_member(user, policy, kubeconfig, domain, size_name, resources, actor)
            except IntegrityError:  # a name drawn twice: practically never; the next round retries
                break
            created += 1
    return created


def _create_member(
    user: User,
    policy: PoolPolicy,
    kubeconfig: UserConfig,
    domain: str,
    size_name: str,
    resources: dict[str, str],
    actor: Actor,
) -> Sandbox:
    project = Project.all_objects.create(owner=user, name=_member_name(), pool=policy)
    sandbox = services._create_sandbox(
        project,
        kubeconfig,
        domain,
        size_name,
        resources,
        base="warm",
        image=policy.image,
        pool_policy=policy,
        pool_label=str(policy.pk),
        pinned_checksum=secrets.token_hex(8),
    )
    Environment.objects.bulk_create(
        Environment(project=project, key=k, value=v, category=c, is_secret=s, is_system=True)
        for k, v, c, s in services._system_env()
    )
    add_event(
        sandbox,
        from_status="",
        to_status=ResourceStatus.CREATING,
        actor=actor,
        reason="pool_refill",
        message="Warm pool sandbox requested.",
        project_name="",
    )
    kicks.kick(sandbox)
    return sandbox


def refill_all(*, actor: Actor, hour: int | None = None, limit: int = 50) -> int:
    """One refill round over every enabled policy in its schedule and every opted-in user with a
    checked kubeconfig whose pool is below target (at most `limit` users per policy). Returns how many
    members it created."""
    hour = timezone.now().hour if hour is None else hour
    created = 0
    for policy in PoolPolicy.objects.filter(enabled=True):
        if not policy.in_schedule(hour) or policy.target == 0:
            continue
        users = (
            User.objects.filter(
                is_active=True,
                warm_pool=True,
                configs__key=ConfigKey.KUBECONFIG,
                configs__check_status=CheckStatus.OK,
            )
            .annotate(members=Count("projects", filter=Q(projects__pool=policy), distinct=True))
            .filter(members__lt=policy.target)
            .order_by("pk")[:limit]
        )
        for user in users:
            created += refill_user(user=user, policy=policy, actor=actor)
    return created


def set_warm_pool(*, user: User, enabled: Any, actor: Actor) -> User:
    """Opt in or out. Opting out deletes the user's idle pool sandboxes (through the normal delete)."""
    if not isinstance(enabled, bool):
        raise ValidationFailed("warm_pool must be true or false.", code="invalid")
    with transaction.atomic():
        services.lock_quota(user.pk)  # a refill in flight finishes first (and its members are drained)
        User.objects.filter(pk=user.pk).update(warm_pool=enabled)
    user.warm_pool = enabled
    audit.record(actor, "user.warm_pool", user)
    if not enabled:
        drain(user=user, actor=actor)
    return user


def drain(*, user: User, actor: Actor, policy: PoolPolicy | None = None) -> int:
    """Delete the idle members of a user's pools (or of one policy). Returns how many."""
    members = list(idle_members(user=user, policy=policy).values_list("pk", flat=True))
    return sum(_delete_member(pk, actor) for pk in members)


def _delete_member(pk: Any, actor: Actor) -> bool:
    """Delete one member through the normal project delete; False when it is gone, already going, or a
    create took it in the meantime (then it is that user's project to keep)."""
    with transaction.atomic():
        # Locked, and still a member: a create may have bound it since.
        project = (
            Project.all_objects.select_for_update(skip_locked=True).filter(pk=pk, pool__isnull=False).first()
        )
        if project is None:
            return False
        try:
            services.project_delete(project=project, actor=actor)
        except InvalidState:  # already being deleted
            return False
    return True


def policy_set(*, image: Any, size: Any, target: Any, actor: Actor, enabled: bool = True) -> PoolPolicy:
    """Create or update the policy of (image, size) (`manage.py warm_pool`)."""
    if not isinstance(image, str) or not image.strip() or len(image) > 300:
        raise ValidationFailed(
            "The image must be a non-empty name of at most 300 characters.", code="invalid"
        )
    size_name, _ = services.sandbox_size(size)
    if not isinstance(target, int) or isinstance(target, bool) or not 0 <= target <= 100:
        raise ValidationFailed("The target must be a whole number from 0 to 100.", code="invalid")
    policy, _ = PoolPolicy.objects.update_or_create(
        image=image.strip(), size=size_name, defaults={"target": target, "enabled": enabled}
    )
    audit.record(actor, "pool_policy.save", policy)
    return policy


def policy_save(*, policy: PoolPolicy, actor: Actor) -> PoolPolicy:
    """Save a policy edited in the admin (its size must be one of settings.SANDBOX_SIZES)."""
    services.sandbox_size(policy.size)
    policy.full_clean()
    policy.save()
    audit.record(actor, "pool_policy.save", policy)
    return policy


def drain_policy(*, policy: PoolPolicy, actor: Actor) -> int:
    """Delete every user's idle members of one policy (admin action). Returns how many."""
    owners = User.objects.filter(projects__pool=policy).distinct()
    return sum(drain(user=owner, actor=actor, policy=policy) for owner in owners)
