"""The OpenAPI schema as the API behaves: every /api/v1 operation documents the error responses it can
give, in the one error shape, and list views that paginate declare it (see core.drf.Pagination)."""

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers

API_PREFIX = "/api/v1/"
_WRITES = ("POST", "PUT", "PATCH", "DELETE")
_DESCRIPTIONS = {
    "400": "Invalid input (a field, a filter, characters, nesting).",
    "401": "Not signed in: send `Authorization: Token <key>` or a session cookie.",
    "403": "Not allowed (for a session: a missing CSRF token).",
    "404": "Not found, or not yours.",
    "409": "The object's state does not allow this now, or a name is taken.",
    "413": "The request body is too large.",
    "502": "An upstream service (GitHub) could not be reached or refused; the message says which.",
}


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="A stable, machine-readable code, e.g. `invalid_key`.")
    message = serializers.CharField(help_text="A sentence for people.")
    details = serializers.DictField(help_text="Structured context, e.g. the field or the limit.")

    class Meta:
        ref_name = "Error"


class AutoSchema(SpectacularAutoSchema):
    def error_codes(self) -> list[str]:
        codes = ["400", "401", "403"]
        paginated = getattr(self.view, "pagination_class", None) is not None  # a page past the end
        if "{" in self.path or self.method == "DELETE" or paginated:
            codes.append("404")
        if self.method in _WRITES:
            codes.append("409")
        if self.method in ("POST", "PUT", "PATCH"):
            codes.append("413")
        # A view may name more (e.g. the import: 404 for another user's installation, 502 for GitHub).
        codes += [c for c in getattr(self.view, "error_codes_extra", ()) if c not in codes]
        return sorted(codes)

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response" or not self.path.startswith(API_PREFIX):
            return responses
        for code in self.error_codes():
            if code not in responses:
                response = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                response["description"] = _DESCRIPTIONS[code]
                responses[code] = response
        return responses
