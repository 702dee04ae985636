"""The DEBUG error page must not crash on what broke the request: a lone surrogate (only a JSON \\ud800
escape makes one) in an exception message or a local variable cannot be encoded as UTF-8, so the page
and its text version escape such characters."""

from django.utils.safestring import SafeString, mark_safe
from django.views.debug import ExceptionReporter


def _encodable(text: SafeString) -> SafeString:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # backslash escapes add no markup: still safe
        return mark_safe(text.encode("utf-8", "backslashreplace").decode("utf-8"))
    return text


class SafeExceptionReporter(ExceptionReporter):
    def get_traceback_html(self) -> SafeString:
        return _encodable(super().get_traceback_html())

    def get_traceback_text(self) -> SafeString:
        return _encodable(super().get_traceback_text())
