"""Server-rendered honesty on the project page (issue 20), without a browser."""

import pytest

from core.audit import SYSTEM
from projects import services
from projects.models import Environment, Project
from tests.factories import KubeconfigFactory, UserFactory
from tests.web.test_views import login

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(db):
    user = UserFactory()
    KubeconfigFactory(user=user)
    return user


def test_the_database_panel_offers_another_name_beside_the_users_own_database_url(owner):
    project = services.project_create(owner=owner, name="Own Db", actor=SYSTEM)
    services.env_upsert(
        project=project, variables=[{"key": "DATABASE_URL", "value": "postgres://mine"}], actor=SYSTEM
    )
    page = login(owner).get(f"/projects/{project.pk}/").content.decode()
    assert 'data-role="own-database-url"' in page
    assert "Tenter never replaces it" in page
    assert 'name="env_key" value="TENTER_DATABASE_URL"' in page
    # without another name adding is still refused, with the user's variable untouched
    response = login(owner).post(f"/projects/{project.pk}/databases", follow=True)
    assert "sets its own DATABASE_URL" in response.content.decode()
    assert Environment.objects.get(project=project, key="DATABASE_URL").value == "postgres://mine"
    # with one, the database is added and its address will go under that name
    response = login(owner).post(
        f"/projects/{project.pk}/databases", {"env_key": "TENTER_DATABASE_URL"}, follow=True
    )
    assert "Adding a PostgreSQL database" in response.content.decode()
    assert project.databases.get().url_env_key == "TENTER_DATABASE_URL"
    assert Environment.objects.get(project=project, key="DATABASE_URL").value == "postgres://mine"


def test_names_are_unique_whatever_the_case(owner):
    services.project_create(owner=owner, name="Web Shop", actor=SYSTEM)
    response = login(owner).post("/projects/new", {"name": "WEB SHOP", "size": "small"})
    assert response.status_code == 400
    assert "You already have a project named" in response.content.decode()
    assert Project.objects.filter(owner=owner).count() == 1


def test_creating_a_project_lands_on_its_page(owner):
    response = login(owner).post("/projects/new", {"name": "Landing", "size": "small"})
    project = Project.objects.get(owner=owner, name="Landing")
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.pk}/"
