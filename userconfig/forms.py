"""Settings forms. The services validate; these only shape the input."""

from django import forms

# A transport guard only: the service enforces the real size limit with its own message.
KUBECONFIG_FORM_MAX = 1024 * 1024


class KubeconfigForm(forms.Form):
    kubeconfig = forms.CharField(
        max_length=KUBECONFIG_FORM_MAX,
        required=False,
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 10,
                "spellcheck": "false",
                "autocomplete": "off",
                "placeholder": "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://…",
            }
        ),
    )

    def clean_kubeconfig(self) -> str:
        text = self.cleaned_data["kubeconfig"]
        if not text.strip():
            raise forms.ValidationError("Paste a kubeconfig or choose a file first.")
        return text


class AgentSettingsForm(forms.Form):
    base_url = forms.URLField(
        max_length=500,
        required=False,
        assume_scheme="https",
        label="Base URL",
        widget=forms.URLInput(attrs={"placeholder": "https://api.anthropic.com"}),
    )
    model = forms.CharField(
        max_length=200, required=False, widget=forms.TextInput(attrs={"placeholder": "claude-sonnet-4-5"})
    )
    small_fast_model = forms.CharField(
        max_length=200,
        required=False,
        label="Small fast model",
        widget=forms.TextInput(attrs={"placeholder": "claude-haiku-4-5"}),
    )
    api_key = forms.CharField(
        max_length=1000,
        required=False,
        label="API key",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored API key")

    def values(self) -> dict[str, str | None]:
        """What to hand to the service: blank text fields clear a setting; a blank key keeps it."""
        data = self.cleaned_data
        api_key: str | None = data["api_key"] or None
        if data["clear_api_key"]:
            api_key = ""
        return {
            "base_url": data["base_url"],
            "model": data["model"].strip(),
            "small_fast_model": data["small_fast_model"].strip(),
            "api_key": api_key,
        }


class ApiTokenForm(forms.Form):
    EXPIRY_CHOICES = [("", "Never"), ("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year")]

    name = forms.CharField(
        max_length=100, widget=forms.TextInput(attrs={"placeholder": "laptop CLI", "autocomplete": "off"})
    )
    expires_in_days = forms.TypedChoiceField(
        choices=EXPIRY_CHOICES, coerce=int, empty_value=None, required=False, label="Expires"
    )
