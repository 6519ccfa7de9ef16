"""What a score means: which measure a benchmark is judged by, and which way is better. One place for the L14 page's
headline measure, its charts' "higher / lower is better" and the instructor's leaderboard."""

from __future__ import annotations

from collections.abc import Iterable

# The measure a benchmark is judged by unless another is asked for: the first of these its results carry. acc_norm
# where a task has it (length-normalised: long answers are not penalised).
MAIN_METRICS = ("acc_norm", "acc", "bits_per_byte", "exact_match")
LOWER_IS_BETTER = frozenset({"bits_per_byte", "byte_perplexity", "token_perplexity", "word_perplexity",
                             "perplexity"})


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


def main_metric(metrics: Iterable[str]) -> str | None:
    """The measure a benchmark is judged by, out of the ones its results carry (standard errors left out); None
    when there are none."""
    names = [m for m in metrics if not m.endswith("_stderr")]
    for name in MAIN_METRICS:
        if name in names:
            return name
    return names[0] if names else None
