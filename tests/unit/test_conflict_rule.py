"""The conflict rule of DESIGN §3, row by row, as the pure function ``decide``."""

from __future__ import annotations

import pytest

from replicator.apply.rule import decide, is_version_regression
from replicator.models import stored_from_item
from tests.conflict_cases import CASES, DESIGN_TABLE, META, Case

pytestmark = pytest.mark.timeout(10)


def test_the_table_covers_every_row_of_design_section_3() -> None:
    assert {case.row for case in DESIGN_TABLE} == set(range(1, 15))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_decide_follows_the_conflict_table(case: Case) -> None:
    stored = stored_from_item(case.stored, META)
    assert decide(stored, case.incoming, here=case.here, mode=case.mode) is case.expected


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_only_a_re_create_losing_to_its_own_tombstone_counts_as_regression(case: Case) -> None:
    stored = stored_from_item(case.stored, META)
    regression = is_version_regression(stored, case.incoming, here=case.here, mode=case.mode)
    assert regression is case.version_regression
