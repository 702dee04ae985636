from typing import Any

from django.db import migrations

SOURCE = "https://github.com/anthropics/skills"


def seed(apps: Any, schema_editor: Any) -> None:
    Skill = apps.get_model("projects", "Skill")
    Skill.objects.get_or_create(
        slug="frontend-design",
        defaults={
            "name": "Frontend Design",
            "description": "Guides the agent to build distinctive, production-grade frontend interfaces.",
            "source_url": SOURCE,
            "install_command": f"npx -y skills add {SOURCE} --skill frontend-design -y",
            "uninstall_command": "npx -y skills remove frontend-design -y",
        },
    )


def unseed(apps: Any, schema_editor: Any) -> None:
    apps.get_model("projects", "Skill").objects.filter(slug="frontend-design").delete()


class Migration(migrations.Migration):
    dependencies = [("projects", "0006_skills_and_task_attempts")]
    operations = [migrations.RunPython(seed, unseed)]
