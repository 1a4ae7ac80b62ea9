"""An entry's hash, computed from each snapshot serialised once, is the hash of its canonical body.

``audit.entry_row`` writes the canonical body as text around the stored JSON text of the
snapshots (and takes texts the engine already made, the row's data and the deadline's note, as
given) instead of serialising a body object; ``audit.entry_hash`` (what ``audit verify``
recomputes) works on the objects. They must agree byte for byte for any data a dossier can hold.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ocop_workflow import audit
from ocop_workflow.store import dumps

TEXT = st.text(max_size=20)  # any Unicode, control characters and quotes included
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
SNAPSHOT = st.dictionaries(TEXT, JSON, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    before=st.none() | SNAPSHOT,
    after=SNAPSHOT,
    reason=st.none() | TEXT,
    actor=TEXT,
    trigger=TEXT,
)
def test_an_entry_rows_hash_is_the_hash_of_its_canonical_body(
    before: dict | None, after: dict, reason: str | None, actor: str, trigger: str
) -> None:
    fields = {
        "dossier_id": "OCOP-2026-0001",
        "seq": 2,
        "trigger": trigger,
        "from_state": "registration",
        "to_state": "business_plan",
        "actor": actor,
        "reason": reason,
        "at": datetime(2026, 3, 2, 2, 0, 0, 123456, tzinfo=UTC),
        "data_before": before,
        "data_after": after,
        "prev_hash": "0" * 64,
    }
    row = audit.entry_row(**fields)
    assert row["hash"] == audit.entry_hash(**fields)
    assert json.loads(row["data_after"]) == after
    assert (
        row["data_before"] is None if before is None else json.loads(row["data_before"]) == before
    )


@settings(max_examples=300, deadline=None)
@given(
    after=SNAPSHOT,
    data=st.dictionaries(TEXT, JSON, max_size=6),
    note=st.none() | st.dictionaries(TEXT, JSON, max_size=6),
    reason=st.none() | TEXT,
    seq=st.integers(min_value=1, max_value=2**70),
)
def test_an_entry_whose_after_data_text_is_given_has_the_same_row_and_hash(
    after: dict, data: dict, note: dict | None, reason: str | None, seq: int
) -> None:
    """``Engine.advance`` hands over the data text it stored in the dossier row and its
    deadline's note text: written into the snapshot, the entry is byte for byte what
    serialising the whole snapshot gives."""
    snapshot = {**after, "data": data, "deadline_note": note}
    fields = {
        "dossier_id": "OCOP-2026-0001",
        "seq": seq,
        "trigger": "forward",
        "from_state": "district_review",
        "to_state": "province_review",
        "actor": "huyen",
        "reason": reason,
        "at": datetime(2026, 3, 2, 2, 0, 0, 123456, tzinfo=UTC),
        "data_before": None,
        "data_after": snapshot,
        "prev_hash": "1" * 64,
    }
    texts = (
        {"data": dumps(data)}
        if note is None
        else {"data": dumps(data), "deadline_note": dumps(note)}
    )
    spliced = audit.entry_row(**fields, after_texts=texts)
    assert spliced == audit.entry_row(**fields)
    assert spliced["hash"] == audit.entry_hash(**fields)


@settings(max_examples=300, deadline=None)
@example(instant=datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo("America/New_York")))  # twice
@given(
    instant=st.datetimes(
        timezones=st.sampled_from(
            [UTC, ZoneInfo("Asia/Ho_Chi_Minh"), ZoneInfo("America/New_York")]
        ),
        allow_imaginary=False,
    )
)
def test_the_text_of_an_instant_in_a_hash_is_its_utc_iso_form_every_time(
    instant: datetime,
) -> None:
    """``iso_utc`` remembers texts: an instant asked for again, or its other fold in a zone
    with summer time (an equal datetime an hour apart), still gets its own UTC text."""
    other_fold = instant.replace(fold=1 - instant.fold)
    for value in (instant, other_fold, instant, instant.astimezone(UTC), other_fold):
        assert audit.iso_utc(value) == value.astimezone(UTC).isoformat(timespec="microseconds")
