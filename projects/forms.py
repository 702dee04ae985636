"""Dashboard forms. They only shape input; the services validate it and their messages are shown."""

from django import forms
from django.conf import settings

from core.errors import ServiceError


def size_choices() -> list[tuple[str, str]]:
    return [
        (
            name,
            f"{name.title()}: {v['cpu_request']} CPU, {v['memory_request']} memory "
            f"(up to {v['cpu_limit']} CPU, {v['memory_limit']}), {v['storage_size']} storage",
        )
        for name, v in settings.SANDBOX_SIZES.items()
    ]


class SizeForm(forms.Form):
    size = forms.ChoiceField(choices=size_choices, required=False, label="Size")


class ProjectCreateForm(forms.Form):
    name = forms.CharField(
        max_length=200,
        required=False,
        strip=False,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "maxlength": 63, "required": True, "placeholder": "Web shop"}
        ),
    )
    description = forms.CharField(
        max_length=5000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "What are you building? (optional)"}),
    )

    size = forms.ChoiceField(choices=size_choices, required=False, label="Size")

    error_fields = {"invalid_name": "name", "name_taken": "name", "invalid_size": "size"}


class EnvVarForm(forms.Form):
    key = forms.CharField(
        max_length=1000,
        required=False,
        strip=False,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "spellcheck": "false",
                "placeholder": "API_URL",
                "required": True,
                "pattern": "[A-Za-z_][A-Za-z0-9_]*",
                "title": "Letters, digits and underscores, not starting with a digit",
            }
        ),
    )
    value = forms.CharField(
        max_length=1_000_000,
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 1, "spellcheck": "false", "placeholder": "value"}),
    )
    is_secret = forms.BooleanField(required=False, label="Secret")

    error_fields = {
        "invalid_key": "key",
        "system_variable": "key",
        "duplicate_key": "key",
        "invalid_value": "value",
        "value_too_large": "value",
    }

    def variables(self) -> list[dict[str, object]]:
        data = self.cleaned_data
        return [{"key": data["key"], "value": data["value"], "is_secret": data["is_secret"]}]


class DeleteProjectForm(forms.Form):
    confirm_name = forms.CharField(max_length=200, required=False, strip=False)


def add_service_error(form: forms.Form, exc: ServiceError) -> None:
    """Show a service's refusal next to the field it is about (or above the form)."""
    field = getattr(form, "error_fields", {}).get(exc.code)
    message = exc.message
    if message.startswith("variables[0]."):  # the batch API's prefix means nothing in a one-row form
        message = message.removeprefix("variables[0].")
        message = message[0].upper() + message[1:]
    form.add_error(field if field in form.fields else None, message)
