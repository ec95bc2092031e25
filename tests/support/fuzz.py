"""Hypothesis settings of the fuzzing tests: reproducible runs of a fixed size."""

from hypothesis import HealthCheck, Phase, settings


def fuzzing(examples: int) -> settings:
    """`examples` generated cases, the same ones every run (derandomized, no example
    database), no shrinking (a problem is reported as it was found) and no time limit."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
