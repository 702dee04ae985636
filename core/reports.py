"""What a bulk action did: the outcome every support-staff service returns and the admin shows."""

from collections import Counter
from dataclasses import dataclass, field


def plural(count: int, noun: str) -> str:
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun + 'es' if noun.endswith('x') else noun + 's'}"


@dataclass
class Report:
    """What an action did: how many targets it acted on, and the others grouped by why they were skipped."""

    noun: str
    did: str
    done: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    @property
    def message(self) -> str:
        text = f"{plural(len(self.done), self.noun)} {self.did}"
        if self.skipped:
            total = sum(self.skipped.values())
            if len(self.skipped) == 1:
                reasons = next(iter(self.skipped))
            else:
                reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
            text += f"; {total} skipped ({reasons})"
        if self.notes:
            text += "; " + "; ".join(self.notes)
        return text + "."
