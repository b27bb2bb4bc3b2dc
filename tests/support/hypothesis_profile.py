"""The Hypothesis settings every property test runs under (loaded by ``-p`` in pyproject).

CI runs the suite on two cores beside live servers and Synapse, so drawing an input can take
seconds: Hypothesis's ``too_slow`` health check and per-example deadline then fail tests that
found nothing wrong. Both measure the machine, not the code; the examples and shrinking are
unchanged. Speed is measured in ``bench/``, never in tests.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "dagma",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("dagma")
