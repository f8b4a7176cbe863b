"""Issue 8 item 7: ``/admin/audit?before=-2147483649`` was a 500 on PostgreSQL (the cursor reached the
database beyond its INTEGER range). A cursor that can name no record is a 400; text or a huge number is the
first page.
"""

from __future__ import annotations

import pytest
from flask import Flask

from tests.conftest import World, login


@pytest.mark.parametrize(
    ("before", "status"),
    [
        ("-2147483649", 400),
        ("-1", 400),
        ("0", 400),
        ("99999999999999999999999", 200),
        ("-99999999999999999999999", 400),
        ("2147483648", 200),
        ("1e400", 200),
        ("NaN", 200),
        ("", 200),
        ("5", 200),
        ("9" * 5000, 200),
        ("-" + "9" * 5000, 400),
        ("\u0663", 200),
    ],
)
def test_the_audit_page_cursor_out_of_range_is_a_400_not_a_500(
    app: Flask, world: World, before: str, status: int
) -> None:
    client = app.test_client()
    assert login(client, "qa").status_code == 302
    response = client.get(f"/admin/audit?before={before}")
    assert response.status_code == status, response.get_data(as_text=True)[:300]
