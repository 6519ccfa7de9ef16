"""The unit every data step passes along: a `Document` (datatrove's shape).

Every pipeline step is `Iterator[Document] -> Iterator[Document]`; a filter returns keep, or `(False, reason)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    text: str
    id: str
    source: str = ""                                  # which input it came from (a path, a shard, a dataset name)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReadError:
    """An unreadable record, counted and reported with its location instead of ending the run."""
    source: str             # file or shard
    location: str           # "line 17", "member doc-42.txt", "byte 1033"
    reason: str
