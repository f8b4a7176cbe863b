"""The clinic's dose orders in the browser's terms: the form, the signature, refusals kept on screen and on
record, cancelling, and the subject page with its orders and cryobank status."""

from __future__ import annotations

import html
import json
import re
from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.dosing import bank
from mfg.dosing import service as order_service
from mfg.dosing.models import DoseOrder
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import Bench
from tests.conftest import PASSWORD, World, login
from tests.integration.test_dose_orders import run_batch

WRONG = "not-the-password-1"


def text_of(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def plain(page: str) -> str:
    """The page's words without markup, single-spaced."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page))


def signed_in(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


def order_form(**changes: str) -> dict[str, str]:
    form = {
        "injection_number": "1",
        "dose_cells": "50000000",
        "body_weight_kg": "71.5",
        "first_due": "2027-01-31",
        "change_reason": "",
        "password": PASSWORD,
        "action": "sign",
    }
    form.update(changes)
    return form


def stored_orders(factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    with factory() as s:
        return [
            {
                "id": o.id,
                "injection": o.injection_number,
                "dose": o.dose_cells,
                "weight": o.body_weight_kg,
                "due": o.due_date,
                "status": o.status,
                "reason": o.change_reason,
                "valid": [v.valid for v in identity_service.signatures_for(s, o)],
            }
            for o in s.scalars(select(DoseOrder).order_by(DoseOrder.id))
        ]


def refusals(factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    with factory() as s:
        return [
            {"actor": e.actor, "entity_type": e.entity_type, "entity_id": e.entity_id, **json.loads(e.detail)}
            for e in s.scalars(
                select(AuditEvent).where(AuditEvent.action == "refused").order_by(AuditEvent.id)
            )
        ]


def order_rows(page: str) -> list[str]:
    table = page.split('<table class="orders">', 1)[1].split("</table>", 1)[0]
    return [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
        for row in re.findall(r'<tr class="order .*?</tr>', table, flags=re.S)
    ]


def field_value(page: str, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', page)
    assert match, name
    return match.group(1)


def audit_ok(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        result = audit_service.verify(s)
        assert result.ok, result.problem


# --- placing an order -----------------------------------------------------------------------------------


def test_the_investigator_orders_the_first_injection_through_the_form(
    app: Flask, world: World, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    client = signed_in(app, "investigator")
    form_page = text_of(client.get(f"/clinic/subjects/{subject.id}/orders/new"))
    assert "Prescribe a dose" in form_page and "ALS-001 · Jordan Example · born 1961-04-12" in form_page
    assert field_value(form_page, "injection_number") == "1"
    assert '<option value="50000000" selected>5 × 10⁷ cells</option>' in form_page
    assert '<option value="10000000" >1 × 10⁷ cells</option>' in form_page
    assert '<option value="100000000" >1 × 10⁸ cells</option>' in form_page
    assert 'name="first_due"' in form_page  # no schedule yet: injection 1 sets it
    assert "Cryobank check for injection 1" in form_page
    assert "No cryovials are stored: the bank cannot supply this dose of 5 × 10⁷." in form_page

    response = client.post(f"/clinic/subjects/{subject.id}/orders/new", data=order_form())
    assert response.status_code == 302
    assert response.headers["Location"] == f"/clinic/subjects/{subject.id}"
    [stored] = stored_orders(session_factory)
    assert stored == {
        "id": stored["id"],
        "injection": 1,
        "dose": 5e7,
        "weight": 71.5,
        "due": date(2027, 1, 31),
        "status": "ordered",
        "reason": None,
        "valid": [True],
    }
    page = text_of(client.get(response.headers["Location"]))
    assert "Injection 1 (visit 4) ordered: 5 × 10⁷ cells, due 2027-01-31; signed." in page
    [row] = order_rows(page)
    assert row.startswith(
        "1 Visit 4 2027-01-31 (2027-01-17 to 2027-02-14) 5 × 10⁷ cells 71.5 kg ordered "
        f"{world.users['investigator'].full_name}"
    )
    assert "valid" in row and "INVALID" not in row
    audit_ok(session_factory)


def test_a_later_injection_with_a_change_of_dose(
    app: Flask, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    client = signed_in(app, "investigator")
    assert client.post(f"/clinic/subjects/{subject.id}/orders/new", data=order_form()).status_code == 302
    form_page = text_of(client.get(f"/clinic/subjects/{subject.id}/orders/new"))
    # the form now proposes injection 2 at the previous level, and shows the schedule instead of the date
    assert field_value(form_page, "injection_number") == "2"
    assert '<option value="50000000" selected>' in form_page
    assert 'name="first_due"' not in form_page
    assert "2027-04-30" in form_page and "2027-10-31" in form_page
    assert "Previous standing order: injection 1, 5 × 10⁷ cells. A different level needs" in plain(form_page)
    response = client.post(
        f"/clinic/subjects/{subject.id}/orders/new",
        data=order_form(
            injection_number="2",
            dose_cells="100000000",
            first_due="",
            change_reason="stable ALSFRS-R; escalate",
        ),
    )
    assert response.status_code == 302
    second = stored_orders(session_factory)[1]
    assert (second["injection"], second["dose"], second["due"]) == (2, 1e8, date(2027, 4, 30))
    assert second["reason"] == "stable ALSFRS-R; escalate"
    page = text_of(client.get(f"/clinic/subjects/{subject.id}"))
    assert "change: stable ALSFRS-R; escalate" in order_rows(page)[1]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"dose_cells": "30000000", "injection_number": "2", "first_due": "", "change_reason": "reduce"},
            "3 × 10⁷ cells is not a dose level of NCT03268603: choose 1 × 10⁷, 5 × 10⁷ or 1 × 10⁸ cells",
        ),
        (
            {"first_due": "2027-02-01"},
            "injection 1 already has an order",
        ),
        (
            {"dose_cells": "10000000", "injection_number": "2", "first_due": ""},
            "the dose changes from 5 × 10⁷ cells (injection 1) to 1 × 10⁷: give the reason for the change",
        ),
        ({"injection_number": "2", "first_due": "", "password": ""}, "enter your password to sign"),
        ({"injection_number": "2", "first_due": "", "body_weight_kg": "seventy"}, "is not a number"),
    ],
    ids=["level-not-in-study", "second-order-same-visit", "change-without-reason", "no-password", "weight"],
)
def test_refusals_keep_the_form_and_are_recorded(
    app: Flask,
    subject: Subject,
    session_factory: sessionmaker[Session],
    changes: dict[str, str],
    message: str,
) -> None:
    client = signed_in(app, "investigator")
    assert client.post(f"/clinic/subjects/{subject.id}/orders/new", data=order_form()).status_code == 302
    before = stored_orders(session_factory)
    form = order_form(body_weight_kg="68.2", **{k: v for k, v in changes.items() if k != "body_weight_kg"})
    if "body_weight_kg" in changes:
        form["body_weight_kg"] = changes["body_weight_kg"]
    response = client.post(f"/clinic/subjects/{subject.id}/orders/new", data=form)
    assert response.status_code == 422
    page = text_of(response)
    assert "Refused:" in page and message in page
    # what was typed is still there, the password is not
    assert field_value(page, "body_weight_kg") == form["body_weight_kg"]
    assert field_value(page, "injection_number") == form["injection_number"]
    assert PASSWORD not in page
    assert stored_orders(session_factory) == before
    [refusal] = refusals(session_factory)
    assert (refusal["actor"], refusal["endpoint"], refusal["method"]) == (
        "investigator",
        "clinic.new_order",
        "POST",
    )
    assert message in refusal["message"]
    assert "password" not in refusal["form"]
    audit_ok(session_factory)


def test_a_wrong_password_stores_nothing_and_is_counted(
    app: Flask, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    client = signed_in(app, "investigator")
    response = client.post(f"/clinic/subjects/{subject.id}/orders/new", data=order_form(password=WRONG))
    assert response.status_code == 422
    assert "password for investigator is wrong: not signed" in text_of(response)
    assert stored_orders(session_factory) == []
    with session_factory() as s:
        assert s.scalar(select(User.failed_logins).where(User.username == "investigator")) == 1
        failure = s.scalars(select(AuditEvent).where(AuditEvent.action == "login_failed")).one()
        assert failure.reason == "wrong password at approved signature"
    audit_ok(session_factory)


def test_checking_the_bank_signs_nothing(
    app: Flask, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    client = signed_in(app, "investigator")
    response = client.post(
        f"/clinic/subjects/{subject.id}/orders/new",
        data=order_form(action="check", dose_cells="100000000", password=""),
    )
    assert response.status_code == 200
    page = text_of(response)
    assert "Refused" not in page
    assert '<option value="100000000" selected>' in page
    assert stored_orders(session_factory) == [] and refusals(session_factory) == []


def test_a_coordinator_cannot_place_an_order(
    app: Flask, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    client = signed_in(app, "coordinator")
    assert client.get(f"/clinic/subjects/{subject.id}/orders/new").status_code == 403
    response = client.post(f"/clinic/subjects/{subject.id}/orders/new", data=order_form())
    assert response.status_code == 403
    assert "the coordinator role may not use this page" in text_of(response)
    assert stored_orders(session_factory) == []
    assert [(r["endpoint"], r["refusal"]) for r in refusals(session_factory)] == [
        ("clinic.new_order", "PermissionRefused"),
        ("clinic.new_order", "PermissionRefused"),
    ]
    page = text_of(client.get(f"/clinic/subjects/{subject.id}"))
    assert "Order a dose" not in page


# --- cancelling -----------------------------------------------------------------------------------------


def test_cancelling_through_the_subject_page(
    app: Flask, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    investigator = signed_in(app, "investigator")
    assert (
        investigator.post(f"/clinic/subjects/{subject.id}/orders/new", data=order_form()).status_code == 302
    )
    [order] = stored_orders(session_factory)
    coordinator = signed_in(app, "coordinator")
    page = text_of(coordinator.get(f"/clinic/subjects/{subject.id}"))
    assert f'action="/clinic/orders/{order["id"]}/cancel"' in page

    response = coordinator.post(f"/clinic/orders/{order['id']}/cancel", data={"reason": ""})
    assert response.status_code == 422
    assert f"give the reason for cancelling dose order #{order['id']}" in text_of(response)
    assert stored_orders(session_factory)[0]["status"] == "ordered"

    nurse = signed_in(app, "nurse")
    assert nurse.post(f"/clinic/orders/{order['id']}/cancel", data={"reason": "x"}).status_code == 403
    assert f"/clinic/orders/{order['id']}/cancel" not in text_of(nurse.get(f"/clinic/subjects/{subject.id}"))

    response = coordinator.post(
        f"/clinic/orders/{order['id']}/cancel", data={"reason": "subject has the flu"}
    )
    assert response.status_code == 302
    page = text_of(coordinator.get(f"/clinic/subjects/{subject.id}"))
    assert f"Dose order #{order['id']} (injection 1) cancelled." in page
    [row] = order_rows(page)
    assert "cancelled subject has the flu" in row
    assert stored_orders(session_factory)[0]["status"] == "cancelled"
    assert coordinator.post("/clinic/orders/999999/cancel", data={"reason": "x"}).status_code == 404
    audit_ok(session_factory)


# --- the subject page -----------------------------------------------------------------------------------


def test_the_subject_page_shows_orders_and_the_cryobank(
    app: Flask,
    world: World,
    study: StudyDefinition,
    subject: Subject,
    bench: Bench,
    session: Session,
    session_factory: sessionmaker[Session],
) -> None:
    run_batch(session, world, study, subject, bench)
    nurse = signed_in(app, "nurse")
    page = text_of(nurse.get(f"/clinic/subjects/{subject.id}"))
    assert "No dose ordered yet." in page
    assert "10 cryovials stored, 3.5 × 10⁸ viable cells expected after thaw." in page
    assert "No order waiting for preparation; for injection 1 at 5 × 10⁷ cells:" in page

    investigator = signed_in(app, "investigator")
    form_page = text_of(investigator.get(f"/clinic/subjects/{subject.id}/orders/new"))
    assert "Thaw 2 vials of 10 for this dose" in form_page and "Thaw 3 vials of 10" in form_page
    assert (
        investigator.post(f"/clinic/subjects/{subject.id}/orders/new", data=order_form()).status_code == 302
    )

    page = text_of(nurse.get(f"/clinic/subjects/{subject.id}"))
    [row] = order_rows(page)
    assert row.startswith("1 Visit 4 2027-01-31 (2027-01-17 to 2027-02-14) 5 × 10⁷ cells 71.5 kg ordered")
    assert "Next to prepare: injection 1, 5 × 10⁷ cells." in page
    assert "Thaw 2 vials of 10 for this dose" in page and "with 2 vials to spare" in page
    with session_factory() as s:
        order = s.scalars(select(DoseOrder)).one()
        first_two = bank.bank_status(s, s.get(Subject, subject.id), study, order).vials_to_thaw
    assert f"Vials to thaw: {', '.join(first_two)}" in plain(page)
    assert "Order a dose" not in page and "Cancel order" not in page  # a nurse reads, nothing more

    # a change to the signed prescription shows its signature as INVALID
    with session_factory() as s:
        order = s.scalars(select(DoseOrder)).one()
        audit_service.update(s, "coordinator", order, reason="weight re-measured", body_weight_kg=80.0)
        s.commit()
    [row] = order_rows(text_of(nurse.get(f"/clinic/subjects/{subject.id}")))
    assert "INVALID the record has changed since it was signed" in row
    audit_ok(session_factory)


def test_once_every_injection_is_ordered_and_prepared_no_bank_projection_is_shown(
    app: Flask, world: World, study: StudyDefinition, subject: Subject, session: Session
) -> None:
    for number in range(1, 5):
        order = order_service.place_order(
            session,
            world.users["investigator"],
            PASSWORD,
            subject,
            study,
            injection_number=number,
            dose_cells=5e7,
            body_weight_kg=70.0,
            first_due=date(2027, 1, 31) if number == 1 else None,
            change_reason=None,
        )
        order_service.mark_in_preparation(session, "technician", order)
        order_service.mark_prepared(session, "technician", order)
    session.commit()
    raw = text_of(signed_in(app, "investigator").get(f"/clinic/subjects/{subject.id}"))
    assert [row.split(" cells ")[1].split(" ")[:3] for row in order_rows(raw)] == [
        ["70", "kg", "prepared"]
    ] * 4
    page = plain(raw)
    assert "Every injection of the schedule is ordered and none is waiting for preparation." in page
    assert "No order waiting for preparation; for injection" not in page
