import factory
from factory.django import DjangoModelFactory

from projects.models import Environment, Project
from sandboxes.models import Database, Sandbox
from userconfig.models import CheckStatus, ConfigKey, User, UserConfig

KUBECONFIG_TEMPLATE = """apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://k8s.example.test:6443
contexts:
- name: test
  context:
    cluster: test
    user: test
    namespace: {namespace}
current-context: test
users:
- name: test
  user:
    token: not-a-real-token
"""


class UserFactory(DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")


class KubeconfigFactory(DjangoModelFactory[UserConfig]):
    class Meta:
        model = UserConfig

    user = factory.SubFactory(UserFactory)
    key = ConfigKey.KUBECONFIG
    value = factory.LazyAttribute(lambda o: KUBECONFIG_TEMPLATE.format(namespace=o.namespace))
    namespace = factory.Sequence(lambda n: f"ns-{n}")
    server = "https://k8s.example.test:6443"
    server_host = "k8s.example.test"
    check_status = CheckStatus.OK
    is_secret = True
    category = "kc"


class ProjectFactory(DjangoModelFactory[Project]):
    class Meta:
        model = Project

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Project {n}")


class SandboxFactory(DjangoModelFactory[Sandbox]):
    class Meta:
        model = Sandbox

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"sandbox-{n:08d}")
    k8s_name = factory.SelfAttribute("name")
    k8s_namespace = "ns-test"
    image = "runtime:test"
    cpu_request, cpu_limit, memory_request, memory_limit, storage_size = (
        "20m",
        "2000m",
        "25Mi",
        "4096Mi",
        "10Gi",
    )


class DatabaseFactory(DjangoModelFactory[Database]):
    class Meta:
        model = Database

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"db-{n:08d}")
    k8s_name = factory.SelfAttribute("name")
    k8s_namespace = "ns-test"
    api_version = "apps.kubeblocks.io/v1"
    cpu_request, cpu_limit, memory_request, memory_limit, storage_size = (
        "100m",
        "1000m",
        "102Mi",
        "1024Mi",
        "3Gi",
    )


class EnvironmentFactory(DjangoModelFactory[Environment]):
    class Meta:
        model = Environment

    project = factory.SubFactory(ProjectFactory)
    key = factory.Sequence(lambda n: f"VAR_{n}")
    value = "value"
