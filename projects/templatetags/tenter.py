"""Words for the dashboard's codes: event reasons and actors (projects/status.py holds the vocabulary)."""

from django import template

from projects import status

register = template.Library()


@register.filter
def reason_words(reason: str) -> str:
    return status.reason_words(reason or "")


@register.filter
def actor_words(actor: str) -> str:
    return status.ACTOR_WORDS.get(actor or "", actor or "")
