"""Issue 8, lot signature: "Lot status changes are unsigned and unrestricted: qa changed LOT-COLL-Q from
rejected back to released with reason 'changed my mind'; qa re-released the expired LOT-COLL-OLD. Lot
release/rejection and putting equipment back in service take only a reason, no password signature, whereas
calibrations are signed. The status dropdown defaults to 'released'."

Releasing or rejecting a lot is an e-signature by QA or QC (meaning released / rejected), from quarantine
only; a rejected lot is final and an expired one is never released. Taking equipment out of service or
putting it back is signed "approved" by a supervisor.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mfg import clock
from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.errors import PermissionRefused, ValidationRefused
from mfg.identity.models import Signature, User
from mfg.materials import service as materials_service
from mfg.materials.models import Equipment, ReagentLot
from tests.bench_data import Bench
from tests.conftest import PASSWORD, World, login


def _client(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


def _lot(session_factory: sessionmaker[Session], lot_id: int) -> ReagentLot:
    with session_factory() as s:
        lot = s.get(ReagentLot, lot_id)
        assert lot is not None
        s.expunge(lot)
        return lot


def _signatures(session_factory: sessionmaker[Session], entity_type: str, entity_id: int) -> list[Signature]:
    with session_factory() as s:
        found = list(
            s.scalars(
                select(Signature)
                .where(Signature.entity_type == entity_type, Signature.entity_id == str(entity_id))
                .order_by(Signature.id)
            )
        )
        s.expunge_all()
        return found


def _last_refusal(session_factory: sessionmaker[Session]) -> AuditEvent:
    with session_factory() as s:
        refusal = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "refused").order_by(AuditEvent.id.desc())
        ).first()
        assert refusal is not None
        s.expunge(refusal)
        return refusal


def _set(client: FlaskClient, lot_id: int, status: str, reason: str, password: str = PASSWORD) -> object:
    return client.post(
        f"/materials/lots/{lot_id}/status", data={"status": status, "reason": reason, "password": password}
    )


def test_a_rejected_lot_is_never_released_again(
    app: Flask, world: World, bench: Bench, session_factory: sessionmaker[Session]
) -> None:
    """The reviewer's first path: LOT-COLL-Q rejected, then 'released' with reason 'changed my mind'."""
    lot_id = bench.lots["LOT-COLL-Q"].id
    qa = _client(app, "qa")
    rejected = _set(qa, lot_id, "rejected", "particulates in the vial")
    assert rejected.status_code == 302, rejected.text[:2000]
    [signature] = _signatures(session_factory, "reagent_lot", lot_id)
    again = _set(qa, lot_id, "released", "changed my mind")
    assert again.status_code == 422
    assert "lot Q1 of Collagenase type I was REJECTED" in again.text
    assert "a rejected lot is quarantined for good" in again.text
    assert "receive a new lot" in again.text
    assert _lot(session_factory, lot_id).status == "rejected"
    assert [s.id for s in _signatures(session_factory, "reagent_lot", lot_id)] == [signature.id]
    refusal = _last_refusal(session_factory)
    assert (refusal.entity_type, refusal.entity_id, refusal.actor) == ("reagent_lot", str(lot_id), "qa")
    # nothing offers it either: a rejected lot has no status form
    page = qa.get("/materials/").text
    assert f"/materials/lots/{lot_id}/status" not in page


def test_an_expired_lot_is_never_released(
    app: Flask, world: World, bench: Bench, session_factory: sessionmaker[Session]
) -> None:
    """The reviewer's second path: the expired LOT-COLL-OLD 're-released'."""
    lot_id = bench.lots["LOT-COLL-OLD"].id
    before = _signatures(session_factory, "reagent_lot", lot_id)
    qa = _client(app, "qa")
    response = _set(qa, lot_id, "released", "still good")
    assert response.status_code == 422
    assert "lot OLD1 of Collagenase type I EXPIRED on" in response.text
    assert "an expired lot cannot be released" in response.text
    assert [s.id for s in _signatures(session_factory, "reagent_lot", lot_id)] == [s.id for s in before]
    with session_factory() as s:
        events = s.scalars(
            select(AuditEvent.action).where(
                AuditEvent.entity_type == "reagent_lot", AuditEvent.entity_id == str(lot_id)
            )
        ).all()
        assert events == ["create", "refused"]


def test_an_expired_lot_shows_expired_in_the_register(app: Flask, world: World, bench: Bench) -> None:
    page = _client(app, "supervisor").get("/materials/").text
    row = _row(page, "LOT-COLL-OLD")
    assert '<span class="badge bad">EXPIRED</span>' in row
    assert "EXPIRED" not in _row(page, "LOT-COLL-1")


def test_an_expired_lot_in_quarantine_can_only_be_rejected(
    app: Flask, session: Session, world: World, bench: Bench, session_factory: sessionmaker[Session]
) -> None:
    lot = materials_service.register_lot(
        session,
        "test-setup",
        scan_code="LOT-LATE",
        name="Advanced MEM",
        catalogue_number="CAT-9",
        lot_number="LATE1",
        expiry_date=clock.today() - timedelta(days=2),
    )
    session.commit()
    lot_id = lot.id
    qa = _client(app, "qa")
    form = _status_form(qa.get("/materials/").text, lot_id)
    assert ">released<" not in form and ">rejected<" in form
    refused = _set(qa, lot_id, "released", "ok")
    assert refused.status_code == 422 and "an expired lot cannot be released" in refused.text
    assert _set(qa, lot_id, "rejected", "expired on arrival").status_code == 302
    assert _lot(session_factory, lot_id).status == "rejected"


def _row(page: str, scan_code: str) -> str:
    match = re.search(rf"<tr><td class=\"mono\">{re.escape(scan_code)}</td>.*?</tr>", page, re.S)
    assert match is not None, scan_code
    return match.group(0)


def _status_form(page: str, lot_id: int) -> str:
    match = re.search(rf'<form[^>]*action="/materials/lots/{lot_id}/status".*?</form>', page, re.S)
    assert match is not None
    return match.group(0)


def test_the_status_form_has_no_default_choice_and_asks_for_a_password(
    app: Flask, world: World, bench: Bench
) -> None:
    page = _client(app, "qcanalyst").get("/materials/").text
    form = _status_form(page, bench.lots["LOT-COLL-Q"].id)
    assert re.search(r'<option value="" selected disabled>', form)
    assert form.count(" selected") == 1  # the placeholder only
    assert '<select name="status" required' in form
    assert 'type="password" name="password"' in form
    # a released lot can only be rejected (a recall)
    released = _status_form(page, bench.lots["LOT-COLL-1"].id)
    assert '<option value="rejected"' in released and '<option value="released"' not in released


def test_qc_releases_a_lot_with_a_signature_shown_in_the_register(
    app: Flask, world: World, bench: Bench, session: Session, session_factory: sessionmaker[Session]
) -> None:
    lot_id = bench.lots["LOT-COLL-Q"].id
    qc = _client(app, "qcanalyst")
    response = _set(qc, lot_id, "released", "CoA reviewed, sterility passed")
    assert response.status_code == 302, response.text[:2000]
    assert _lot(session_factory, lot_id).status == "released"
    [signature] = _signatures(session_factory, "reagent_lot", lot_id)
    assert signature.meaning == "released" and signature.signer_id == world.users["qc_analyst"].id
    page = qc.get(response.headers["Location"]).text
    assert "is now released" in page
    row = page[page.index('<td class="mono">LOT-COLL-Q</td>') :]
    row = row[: row.index("</tbody></table></td></tr>")]
    assert world.users["qc_analyst"].full_name in row
    assert "released" in row and " UTC" in row and '<span class="badge ok">valid</span>' in row
    with session_factory() as s:
        event = s.scalars(
            select(AuditEvent)
            .where(AuditEvent.entity_type == "reagent_lot", AuditEvent.entity_id == str(lot_id))
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event is not None and event.action == "status"
        assert event.reason == "CoA reviewed, sterility passed"
        assert json.loads(event.changes) == {"status": ["quarantined", "released"]}
    # usable at the bench from now on; a recall rejects it, for good
    session.expire_all()
    assert materials_service.usable_lot(session, "LOT-COLL-Q", on=clock.today()).id == lot_id
    session.rollback()
    recalled = _set(qc, lot_id, "rejected", "supplier recall")
    assert recalled.status_code == 302, recalled.text
    assert _lot(session_factory, lot_id).status == "rejected"
    again = _set(qc, lot_id, "released", "second thoughts")
    assert again.status_code == 422 and "a rejected lot is quarantined for good" in again.text
    session.rollback()
    assert audit_service.verify(session).ok


@pytest.mark.parametrize(
    ("password", "message"),
    [("", "enter your password to sign"), ("not-my-password-1", "password for qa is wrong: not signed")],
    ids=["no-password", "wrong-password"],
)
def test_an_unsigned_or_wrongly_signed_release_changes_nothing(
    app: Flask,
    world: World,
    bench: Bench,
    session: Session,
    session_factory: sessionmaker[Session],
    password: str,
    message: str,
) -> None:
    lot_id = bench.lots["LOT-COLL-Q"].id
    response = _set(_client(app, "qa"), lot_id, "released", "CoA reviewed", password=password)
    assert response.status_code == 422
    assert message in response.text
    assert _lot(session_factory, lot_id).status == "quarantined"
    assert _signatures(session_factory, "reagent_lot", lot_id) == []
    with session_factory() as s:
        user = s.scalar(select(User).where(User.username == "qa"))
        assert user is not None and user.failed_logins == (1 if password else 0)
        if password:
            failure = s.scalar(
                select(AuditEvent).where(AuditEvent.action == "login_failed", AuditEvent.actor == "qa")
            )
            assert failure is not None and json.loads(failure.detail)["where"] == "released signature"
    assert audit_service.verify(session).ok


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("quarantined", "a lot goes from quarantine to released or rejected only"),
        ("", "Status is required"),
        ("approved", "lot status must be one of"),
    ],
)
def test_a_lot_goes_from_quarantine_to_released_or_rejected_only(
    app: Flask, world: World, bench: Bench, session_factory: sessionmaker[Session], status: str, message: str
) -> None:
    lot_id = bench.lots["LOT-COLL-Q"].id
    response = _set(_client(app, "qa"), lot_id, status, "why not")
    assert response.status_code == 422
    assert message in response.text
    assert _lot(session_factory, lot_id).status == "quarantined"


def test_only_qa_or_qc_sign_a_lot_release(session: Session, world: World, bench: Bench) -> None:
    lot = session.get(ReagentLot, bench.lots["LOT-COLL-Q"].id)
    assert lot is not None
    for role in ("supervisor", "technician", "admin"):
        with pytest.raises(PermissionRefused, match="a QA reviewer or a QC analyst does"):
            materials_service.set_lot_status(session, world.users[role], PASSWORD, lot, "released", "ok")
        session.rollback()
    with pytest.raises(ValidationRefused, match="Reason is required"):
        materials_service.set_lot_status(session, world.users["qa"], PASSWORD, lot, "released", " ")
    session.rollback()


# --- equipment: out of service and back, signed by the supervisor ------------------------------------------


def _equipment(session_factory: sessionmaker[Session], equipment_id: int) -> Equipment:
    with session_factory() as s:
        item = s.get(Equipment, equipment_id)
        assert item is not None
        s.expunge(item)
        return item


def test_equipment_goes_out_of_service_and_back_with_signatures(
    app: Flask, world: World, bench: Bench, session: Session, session_factory: sessionmaker[Session]
) -> None:
    item_id = bench.equipment["INC-01"].id
    supervisor = _client(app, "supervisor")
    out = supervisor.post(
        f"/materials/equipment/{item_id}/status",
        data={"status": "out_of_service", "reason": "door seal torn", "password": PASSWORD},
    )
    assert out.status_code == 302, out.text[:2000]
    assert _equipment(session_factory, item_id).status == "out_of_service"
    back = supervisor.post(
        f"/materials/equipment/{item_id}/status",
        data={"status": "in_service", "reason": "seal replaced", "password": PASSWORD},
    )
    assert back.status_code == 302, back.text[:2000]
    signatures = _signatures(session_factory, "equipment", item_id)
    assert [s.meaning for s in signatures] == ["approved", "approved"]
    assert [s.comment for s in signatures] == [
        "taken out of service: door seal torn",
        "put back in service: seal replaced",
    ]
    page = supervisor.get(back.headers["Location"]).text
    status_section = page[page.index("<h2>Service status</h2>") : page.index("Record a calibration")]
    assert world.users["supervisor"].full_name in status_section
    assert "put back in service: seal replaced" in status_section
    assert "approved" in status_section and " UTC" in status_section
    session.rollback()
    assert audit_service.verify(session).ok


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "enter your password to sign"),
        ("wrong-password-9", "password for supervisor is wrong: not signed"),
    ],
    ids=["no-password", "wrong-password"],
)
def test_an_unsigned_service_change_changes_nothing(
    app: Flask,
    world: World,
    bench: Bench,
    session_factory: sessionmaker[Session],
    password: str,
    message: str,
) -> None:
    item_id = bench.equipment["INC-01"].id
    response = _client(app, "supervisor").post(
        f"/materials/equipment/{item_id}/status",
        data={"status": "out_of_service", "reason": "door seal torn", "password": password},
    )
    assert response.status_code == 422
    assert message in response.text
    assert 'value="door seal torn"' in response.text
    assert _equipment(session_factory, item_id).status == "in_service"
    assert _signatures(session_factory, "equipment", item_id) == []
    with session_factory() as s:
        user = s.scalar(select(User).where(User.username == "supervisor"))
        assert user is not None and user.failed_logins == (1 if password else 0)
