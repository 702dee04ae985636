"""The signed-in user's own settings: kubeconfig state, AI agent settings and personal API tokens."""

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.audit import actor_for
from core.drf import StrictSerializer
from projects import pools
from projects import services as project_services
from reconcile.kube.kubeconfig import MAX_KUBECONFIG_BYTES
from userconfig import selectors, services
from userconfig.auth import current_user
from userconfig.models import ApiToken, User, UserConfig

PENDING_FIELDS: dict[str, serializers.Field] = {
    "namespace": serializers.CharField(),
    "server_host": serializers.CharField(),
    "server_address": serializers.CharField(),
    "check_status": serializers.CharField(),
    "check_message": serializers.CharField(),
    "checked_at": serializers.DateTimeField(allow_null=True),
    "updated_at": serializers.DateTimeField(allow_null=True),
}

KubeconfigState = inline_serializer(
    "KubeconfigState",
    {
        "configured": serializers.BooleanField(),
        "namespace": serializers.CharField(),
        "server_host": serializers.CharField(),
        "server_address": serializers.CharField(help_text="host:port of the cluster's API server"),
        "check_status": serializers.CharField(),
        "check_message": serializers.CharField(),
        "checked_at": serializers.DateTimeField(allow_null=True),
        "updated_at": serializers.DateTimeField(allow_null=True),
        "pending": inline_serializer(
            "PendingKubeconfigState",
            PENDING_FIELDS,
            allow_null=True,
            help_text="A new kubeconfig waiting for its cluster check; the one above stays in use until "
            "it passes (then it replaces it), or until you discard it or use it anyway.",
        ),
    },
)


def _pending_state(pending: UserConfig | None) -> dict[str, object] | None:
    if pending is None:
        return None
    return {
        "namespace": pending.namespace,
        "server_host": pending.server_host,
        "server_address": pending.server_address,
        "check_status": pending.check_status,
        "check_message": pending.check_message,
        "checked_at": pending.checked_at,
        "updated_at": pending.updated_at,
    }


def kubeconfig_state(config: UserConfig | None, pending: UserConfig | None = None) -> dict[str, object]:
    if config is None:
        return {
            "configured": False,
            "namespace": "",
            "server_host": "",
            "server_address": "",
            "check_status": "",
            "check_message": "",
            "checked_at": None,
            "updated_at": None,
            "pending": None,
        }
    return {
        "configured": True,
        "namespace": config.namespace,
        "server_host": config.server_host,
        "server_address": config.server_address,
        "check_status": config.check_status,
        "check_message": config.check_message,
        "checked_at": config.checked_at,
        "updated_at": config.updated_at,
        "pending": _pending_state(pending),
    }


def user_kubeconfig_state(user: User) -> dict[str, object]:
    return kubeconfig_state(
        selectors.kubeconfig_state(user=user), selectors.kubeconfig_pending_state(user=user)
    )


class KubeconfigApi(APIView):
    class KubeconfigInputSerializer(StrictSerializer):
        kubeconfig = serializers.CharField(max_length=4 * MAX_KUBECONFIG_BYTES, trim_whitespace=False)

    @extend_schema(responses=KubeconfigState)
    def get(self, request: Request) -> Response:
        return Response(user_kubeconfig_state(current_user(request)))

    @extend_schema(request=KubeconfigInputSerializer, responses=KubeconfigState)
    def put(self, request: Request) -> Response:
        data = self.KubeconfigInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project_services.kubeconfig_change(
            user=current_user(request), text=data.validated_data["kubeconfig"], actor=actor_for(request)
        )
        return Response(user_kubeconfig_state(current_user(request)))

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request) -> Response:
        services.kubeconfig_remove(user=current_user(request), actor=actor_for(request))
        return Response(status=204)


class PendingKubeconfigApi(APIView):
    @extend_schema(
        request=None, responses={204: None}, summary="Discard the new kubeconfig waiting for its check"
    )
    def delete(self, request: Request) -> Response:
        services.kubeconfig_pending_discard(user=current_user(request), actor=actor_for(request))
        return Response(status=204)


class PendingKubeconfigAcceptApi(APIView):
    error_codes_extra = ("404",)  # no new kubeconfig is waiting

    @extend_schema(
        request=None,
        responses=KubeconfigState,
        summary="Use the new kubeconfig anyway, whatever its check said (409 kubeconfig_would_strand)",
    )
    def post(self, request: Request) -> Response:
        project_services.kubeconfig_pending_accept(user=current_user(request), actor=actor_for(request))
        return Response(user_kubeconfig_state(current_user(request)))


class AgentApi(APIView):
    class AgentInputSerializer(StrictSerializer):
        base_url = serializers.URLField(required=False, allow_blank=True, max_length=500)
        model = serializers.CharField(required=False, allow_blank=True, max_length=200)
        small_fast_model = serializers.CharField(required=False, allow_blank=True, max_length=200)
        api_key = serializers.CharField(required=False, allow_blank=True, max_length=1000, write_only=True)

    class AgentOutputSerializer(serializers.Serializer):
        base_url = serializers.CharField()
        model = serializers.CharField()
        small_fast_model = serializers.CharField()
        api_key_set = serializers.BooleanField()
        api_key_masked = serializers.CharField()

    @extend_schema(responses=AgentOutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(self.AgentOutputSerializer(selectors.agent_settings(user=current_user(request))).data)

    @extend_schema(request=AgentInputSerializer, responses=AgentOutputSerializer)
    def put(self, request: Request) -> Response:
        data = self.AgentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project_services.agent_settings_change(
            user=current_user(request), actor=actor_for(request), **data.validated_data
        )
        return Response(self.AgentOutputSerializer(selectors.agent_settings(user=current_user(request))).data)


class ApiTokenOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "expires_at"]
        read_only_fields = fields


class ApiTokenCreatedSerializer(ApiTokenOutputSerializer):
    token = serializers.CharField(help_text="The secret: shown in this response only, never again.")

    class Meta(ApiTokenOutputSerializer.Meta):
        fields = [*ApiTokenOutputSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ApiTokenListApi(APIView):
    class ApiTokenInputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=100)
        expires_in_days = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=3650
        )

    @extend_schema(responses=ApiTokenOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        tokens = selectors.api_tokens(user=current_user(request))
        return Response(ApiTokenOutputSerializer(tokens, many=True).data)

    @extend_schema(request=ApiTokenInputSerializer, responses={201: ApiTokenCreatedSerializer})
    def post(self, request: Request) -> Response:
        data = self.ApiTokenInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, secret = services.api_token_create(
            user=current_user(request), actor=actor_for(request), **data.validated_data
        )
        return Response({**ApiTokenOutputSerializer(token).data, "token": secret}, status=201)


class ApiTokenDetailApi(APIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, token_id: str) -> Response:
        services.api_token_revoke(user=current_user(request), token_id=token_id, actor=actor_for(request))
        return Response(status=204)


IdleStopDefault = inline_serializer(
    "IdleStopDefault",
    {
        "minutes": serializers.IntegerField(
            allow_null=True, help_text="Your own default; 0 = never; null = the server's default."
        ),
        "server_default_minutes": serializers.FloatField(help_text="IDLE_STOP_MINUTES; 0 = never."),
        "effective_minutes": serializers.FloatField(
            help_text="What applies to your projects that have no timeout of their own; 0 = never."
        ),
    },
)


def idle_stop_state(user: User) -> dict[str, object]:
    server = max(0.0, float(settings.IDLE_STOP_MINUTES))
    own = user.idle_stop_minutes
    return {
        "minutes": own,
        "server_default_minutes": server,
        "effective_minutes": float(own) if own is not None else server,
    }


class IdleStopDefaultApi(APIView):
    """The caller's default idle timeout for their projects (a project's own timeout wins)."""

    class IdleStopInputSerializer(StrictSerializer):
        minutes = serializers.IntegerField(
            allow_null=True,
            min_value=0,
            max_value=services.IDLE_STOP_MAX_MINUTES,
            help_text="Minutes without activity before a sandbox stops; 0 = never; null = the server's "
            "default.",
        )

    @extend_schema(responses=IdleStopDefault)
    def get(self, request: Request) -> Response:
        return Response(idle_stop_state(current_user(request)))

    @extend_schema(request=IdleStopInputSerializer, responses=IdleStopDefault)
    def put(self, request: Request) -> Response:
        data = self.IdleStopInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.idle_stop_default_set(
            user=current_user(request), minutes=data.validated_data["minutes"], actor=actor_for(request)
        )
        return Response(idle_stop_state(user))


WarmPoolState = inline_serializer(
    "WarmPoolState",
    {
        "enabled": serializers.BooleanField(help_text="Keep warm sandboxes ready for your new projects."),
        "offered": serializers.BooleanField(help_text="Whether this server has any warm pool policy."),
        "idle": serializers.IntegerField(help_text="Your warm sandboxes waiting for a project now."),
    },
)


def warm_pool_state(user: User) -> dict[str, object]:
    return {"enabled": user.warm_pool, "offered": pools.offered(), "idle": pools.idle_count(user=user)}


class WarmPoolApi(APIView):
    """Warm sandboxes for the caller's new projects: on by default where an operator defined a pool.
    Turning them off deletes the caller's idle ones."""

    class WarmPoolInputSerializer(StrictSerializer):
        enabled = serializers.BooleanField()

    @extend_schema(responses=WarmPoolState)
    def get(self, request: Request) -> Response:
        return Response(warm_pool_state(current_user(request)))

    @extend_schema(request=WarmPoolInputSerializer, responses=WarmPoolState)
    def put(self, request: Request) -> Response:
        data = self.WarmPoolInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = pools.set_warm_pool(
            user=current_user(request), enabled=data.validated_data["enabled"], actor=actor_for(request)
        )
        return Response(warm_pool_state(user))
