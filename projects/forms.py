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
    # Set when the user confirmed replacing an existing variable (the row's own Edit form always does).
    overwrite = forms.BooleanField(required=False)

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


def parse_dotenv(text: str) -> list[tuple[str, str]]:
    """`KEY=value` lines as a `.env` file has them: blank lines and `#` comments skipped, an `export `
    prefix and one pair of matching quotes around the value removed. Raises ValidationError naming
    the first line that is not `KEY=value`."""
    pairs = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise forms.ValidationError(f"Line {number} is not KEY=value.")
        quote = value[:1]
        if len(value) >= 2 and quote in ("'", '"') and value[-1] == quote:
            value = value[1:-1]
            if quote == '"':
                value = value.replace("\\n", "\n")
        pairs.append((key, value))
    if not pairs:
        raise forms.ValidationError("Paste at least one KEY=value line.")
    return pairs


class EnvBatchForm(forms.Form):
    """Several variables at once (a pasted `.env`, or rows staged in the page): one save, one restart."""

    dotenv = forms.CharField(
        max_length=1_000_000,
        strip=False,
        label="Variables",
        widget=forms.Textarea(
            attrs={
                "rows": 5,
                "spellcheck": "false",
                "placeholder": "API_URL=https://api.example.com\nDEBUG=0",
            }
        ),
    )
    is_secret = forms.BooleanField(required=False, label="Secret")
    overwrite = forms.BooleanField(required=False)

    error_fields = {
        "invalid_key": "dotenv",
        "system_variable": "dotenv",
        "duplicate_key": "dotenv",
        "invalid_value": "dotenv",
        "value_too_large": "dotenv",
        "too_many": "dotenv",
        "environment_too_large": "dotenv",
    }

    def clean_dotenv(self) -> list[tuple[str, str]]:
        return parse_dotenv(self.cleaned_data["dotenv"])

    def variables(self) -> list[dict[str, object]]:
        secret = self.cleaned_data["is_secret"]
        return [{"key": k, "value": v, "is_secret": secret} for k, v in self.cleaned_data["dotenv"]]


class DeleteProjectForm(forms.Form):
    confirm_name = forms.CharField(max_length=200, required=False, strip=False)


def add_service_error(form: forms.Form, exc: ServiceError) -> None:
    """Show a service's refusal next to the field it is about (or above the form)."""
    field = getattr(form, "error_fields", {}).get(exc.code)
    message = exc.message
    if message.startswith("variables[0].") and not isinstance(form, EnvBatchForm):
        # the batch API's prefix means nothing in a one-row form
        message = message.removeprefix("variables[0].")
        message = message[0].upper() + message[1:]
    elif message.startswith("variables[") and isinstance(form, EnvBatchForm):
        index, _, rest = message.removeprefix("variables[").partition("].")
        if index.isdigit():
            message = f"Variable {int(index) + 1}: {rest}"
    form.add_error(field if field in form.fields else None, message)
