"""The API's JSON parser (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]). Kept apart from core.drf: DRF's
views module reads api_settings at import, which imports this module."""

from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import parsers

from core.inputs import load_json_body


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, bounded: at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes (413), JSON_MAX_DEPTH
    levels, and no NUL or lone surrogates in any key or string (400). Errors are ServiceErrors, so
    they get the usual error body."""

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read() if limit is None else stream.read(limit + 1)
        return load_json_body(body, encoding)
