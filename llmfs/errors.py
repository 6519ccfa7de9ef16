"""Every error llmfs raises on purpose, in one place: each is a ValueError whose message names the cause and the fix,
so a page shows it where the person acted and the CLI exits 2 with it. Modules raise these; the classes live here
so that a low layer never imports a higher one just to name an error."""

from __future__ import annotations

import os
from typing import Sequence

MAX_REPORTED_ERRORS = 5


class ConfigError(ValueError):
    """A config value outside its allowed range. `.field` names the offending field (the UI highlights it)."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


class SourceError(ValueError):
    """A model or data source that cannot be used; the message says why and what to do instead."""


class DataError(ValueError):
    """A data source that cannot be read; the message names the file (and line) and the fix."""


class AccessError(ValueError):
    """A source this person may not use here (a workshop); the message says what they may use instead. It never
    says whether the refused path exists."""


class LimitError(ValueError):
    """A submission refused by the server's limits (a workshop's per-user rules); the message says which and why."""


class PrecisionError(ValueError):
    """A precision this hardware cannot run; the message says why and what to pick instead."""


class AdapterError(ValueError):
    """An adapter is missing, malformed or refused; the message names the cause and the fix."""


class UploadError(ValueError):
    """An upload refused; the message says why and what to do. `.problems`: `(line number, problem)` for
    malformed content (a row number for Parquet; 0: the file as a whole), empty for a refused name, size or type."""

    def __init__(self, message: str, problems: list[tuple[int, str]] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


class TaskDataError(ValueError):
    """A data file that cannot be read as the task's items; ``.errors`` lists ``(line number, problem)``."""

    def __init__(self, path: str | os.PathLike, errors: Sequence[tuple[int, str]], total: int | None = None):
        self.path, self.errors = str(path), list(errors)
        shown = "; ".join(f"line {n}: {msg}" for n, msg in self.errors[:MAX_REPORTED_ERRORS])
        count = total if total is not None else len(self.errors)
        more = f" (and {count - MAX_REPORTED_ERRORS} more)" if count > MAX_REPORTED_ERRORS else ""
        super().__init__(f"{self.path}: {count} malformed line{'s' if count != 1 else ''}: {shown}{more}")
