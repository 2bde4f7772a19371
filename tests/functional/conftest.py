"""The pipeline rig's fixtures (defined in ``test_pipeline_faults``), for every module here."""

from tests.functional.test_pipeline_faults import (  # noqa: F401 (fixtures, found by name)
    control_client,
    metrics,
    new_metrics,
    rig,
)
