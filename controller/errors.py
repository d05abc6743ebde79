"""The exception hierarchy: one root, context attributes, messages a technician can act on."""

from __future__ import annotations

from dataclasses import dataclass


class BoosterError(Exception):
    """Root of every error boosterd raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a station file, located as precisely as the YAML allows."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"


class ConfigError(BoosterError):
    """A station file could not be loaded; ``issues`` lists every problem found."""

    def __init__(self, file: str, issues: list[ConfigIssue]) -> None:
        self.file = file
        self.issues = issues
        count = len(issues)
        super().__init__(
            f"{file}: {count} error{'s' if count != 1 else ''}\n"
            + "\n".join(f"  {issue}" for issue in issues)
        )

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, list[ConfigIssue]]]:
        # Picklable as raised (a worker process reports it to its pool intact).
        return (type(self), (self.file, self.issues))
