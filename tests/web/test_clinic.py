"""The clinic station: enrollment with its signature, refusals, second-person check, corrections, scanning."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from labels import isbt128
from mfg import clock
from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.identity.models import Signature, User
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.conftest import PASSWORD, World, enroll, enrollment_form, login, make_user

WRONG = "not-the-password-1"


# --- helpers --------------------------------------------------------------------------------------------


def text_of(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def subjects(factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    with factory() as s:
        return [
            {
                "id": x.id,
                "study_subject_id": x.study_subject_id,
                "name": x.name,
                "coi": x.coi_identifier,
                "enrolled_by_id": x.enrolled_by_id,
            }
            for x in s.scalars(select(Subject).order_by(Subject.id))
        ]


def signatures(factory: sessionmaker[Session], meaning: str | None = None) -> list[dict[str, Any]]:
    with factory() as s:
        query = select(Signature).order_by(Signature.id)
        if meaning:
            query = query.where(Signature.meaning == meaning)
        return [
            {
                "printed_name": x.printed_name,
                "meaning": x.meaning,
                "signer_id": x.signer_id,
                "entity_type": x.entity_type,
                "entity_id": x.entity_id,
            }
            for x in s.scalars(query)
        ]


def refusals(factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    with factory() as s:
        return [
            {"actor": e.actor, **json.loads(e.detail)}
            for e in s.scalars(
                select(AuditEvent).where(AuditEvent.action == "refused").order_by(AuditEvent.id)
            )
        ]


def failed_logins(factory: sessionmaker[Session], username: str) -> int:
    with factory() as s:
        return s.scalar(select(User.failed_logins).where(User.username == username)) or 0


def audit_ok(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        result = audit_service.verify(s)
        assert result.ok, result.problem


def signature_rows(page: str) -> list[str]:
    table = page.split('<table class="signatures">', 1)[1].split("</table>", 1)[0]
    return [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
        for row in re.findall(r'<tr class="sig-[a-z]+">.*?</tr>', table, flags=re.S)
    ]


def trail_section(page: str) -> str:
    return page.split("Audit trail of this record", 1)[1]


@pytest.fixture
def coordinator(client: FlaskClient) -> FlaskClient:
    assert login(client, "coordinator").status_code == 302
    return client


# --- enrollment -----------------------------------------------------------------------------------------


def test_enrollment_through_the_web_creates_the_subject_and_signs_it(
    coordinator: FlaskClient, world: World, session_factory: sessionmaker[Session]
) -> None:
    response = coordinator.post("/clinic/subjects/new", data=enrollment_form(world))
    assert response.status_code == 302
    [stored] = subjects(session_factory)
    assert response.headers["Location"] == f"/clinic/subjects/{stored['id']}"
    assert stored["study_subject_id"] == "ALS-002"
    assert stored["name"] == "Casey Sample"
    assert stored["enrolled_by_id"] == world.users["coordinator"].id

    page = text_of(coordinator.get(response.headers["Location"]))
    identifier = stored["coi"]
    expected = isbt128.build_coi(identifier[:5], int(identifier[5:7]), identifier[7:])
    assert identifier.startswith(f"A9999{clock.now().year % 100:02d}")
    assert (
        f'<span class="ident">{expected.identifier}</span>'
        f'<span class="check-box" title="ISO 7064 Mod 37-2 check character">{expected.check_character}</span>'
    ) in page
    assert f"ALS-002 enrolled; chain of identity {identifier} assigned." in page
    rows = signature_rows(page)
    assert len(rows) == 1
    assert rows[0].startswith(f"{world.users['coordinator'].full_name} Clinical site coordinator performed")
    assert rows[0].endswith("valid")
    assert [(s["meaning"], s["printed_name"]) for s in signatures(session_factory)] == [
        ("performed", world.users["coordinator"].full_name)
    ]
    assert "Second-person verification" in page
    audit_ok(session_factory)


@pytest.fixture
def subject(session: Session, world: World, study: StudyDefinition) -> Subject:
    """An enrollment not verified yet: these tests verify (or try to) through the clinic's pages."""
    return enroll(session, world, study, verified=False)


def test_the_subject_list_shows_the_enrolled_subject(app: Flask, subject: Subject, world: World) -> None:
    client = app.test_client()
    login(client, "nurse")
    page = text_of(client.get("/clinic/subjects"))
    assert f'<a href="/clinic/subjects/{subject.id}">ALS-001</a>' in page
    assert subject.coi_identifier in page
    assert world.site.name in page


def test_enrollment_with_a_wrong_password_is_refused_and_counted(
    coordinator: FlaskClient, world: World, session_factory: sessionmaker[Session]
) -> None:
    response = coordinator.post("/clinic/subjects/new", data=enrollment_form(world, password=WRONG))
    assert response.status_code == 422
    page = text_of(response)
    assert "password for coordinator is wrong: not signed" in page
    assert subjects(session_factory) == []
    assert signatures(session_factory) == []
    # what was typed stays on the screen, the password does not
    assert 'value="ALS-002"' in page
    assert 'value="Casey Sample"' in page
    assert 'value="1970-05-17"' in page
    assert 'value="MRN-777"' in page
    assert f'<option value="{world.site.id}" selected>' in page
    assert WRONG not in page
    assert failed_logins(session_factory, "coordinator") == 1
    with session_factory() as s:
        failure = s.scalars(select(AuditEvent).where(AuditEvent.action == "login_failed")).one()
        assert failure.actor == "coordinator"
        assert "performed signature" in (failure.reason or "")
    audit_ok(session_factory)


def test_five_wrong_signing_passwords_lock_the_account(
    coordinator: FlaskClient, world: World, session_factory: sessionmaker[Session]
) -> None:
    for _ in range(5):
        response = coordinator.post("/clinic/subjects/new", data=enrollment_form(world, password=WRONG))
        assert response.status_code == 422
    with session_factory() as s:
        assert s.scalar(select(User.locked).where(User.username == "coordinator")) is True
    assert coordinator.get("/").status_code == 302  # the locked account's session ends
    assert subjects(session_factory) == []


def test_enrollment_without_a_password_stores_nothing(
    coordinator: FlaskClient, world: World, session_factory: sessionmaker[Session]
) -> None:
    response = coordinator.post("/clinic/subjects/new", data=enrollment_form(world, password=""))
    assert response.status_code == 422
    assert "enter your password to sign" in text_of(response)
    assert subjects(session_factory) == []
    assert signatures(session_factory) == []
    form = dict(enrollment_form(world))
    del form["password"]
    assert coordinator.post("/clinic/subjects/new", data=form).status_code == 422
    assert subjects(session_factory) == []
    assert failed_logins(session_factory, "coordinator") == 0  # a blank is not a guess
    assert [r["message"] for r in refusals(session_factory)] == ["enter your password to sign"] * 2


REFUSED_ENROLLMENTS = {  # case: (changes, message)
    "duplicate": ({"study_subject_id": "ALS-001"}, "ALS-001 is already enrolled in"),
    "duplicate in lower case": ({"study_subject_id": "als-001"}, "ALS-001 is already enrolled in"),
    "malformed id": (
        {"study_subject_id": "SUBJ-1"},
        "study subject id 'SUBJ-1' does not have this study's form",
    ),
    "short id": ({"study_subject_id": "ALS-1"}, "study subject id 'ALS-1' does not have this study's form"),
    "future consent": ({"consent_date": "TOMORROW"}, "consent date TOMORROW is in the future"),
    "future birth": ({"date_of_birth": "TOMORROW"}, "date of birth TOMORROW is not possible"),
    "consent before birth": ({"consent_date": "1960-01-01"}, "consent date is before the date of birth"),
    "malformed MRN": (
        {"medical_record_number": "MRN 12 34"},
        "the medical record number must be 3-40 letters",
    ),
}


def test_refused_enrollment_leaves_data_intact_and_is_recorded(
    coordinator: FlaskClient,
    world: World,
    subject: Subject,
    session_factory: sessionmaker[Session],
    subtests: pytest.Subtests,
) -> None:
    tomorrow = (clock.now().date() + timedelta(days=1)).isoformat()
    for case, (changes, message) in REFUSED_ENROLLMENTS.items():
        with subtests.test(case=case):
            changes = {k: tomorrow if v == "TOMORROW" else v for k, v in changes.items()}
            message = message.replace("TOMORROW", tomorrow)
            before = subjects(session_factory)
            refused_before = len(refusals(session_factory))
            response = coordinator.post("/clinic/subjects/new", data=enrollment_form(world, **changes))
            assert response.status_code == 422
            assert message in text_of(response)
            assert subjects(session_factory) == before
            assert len(signatures(session_factory)) == 1  # only the fixture's enrollment signature
            recorded = refusals(session_factory)
            assert len(recorded) == refused_before + 1
            assert recorded[-1]["actor"] == "coordinator"
            assert message in recorded[-1]["message"]
            assert recorded[-1]["endpoint"] == "clinic.enroll"
            assert "password" not in recorded[-1]["form"]
    assert failed_logins(session_factory, "coordinator") == 0
    audit_ok(session_factory)


# --- second-person verification -------------------------------------------------------------------------


def verify(client: FlaskClient, subject: Subject, username: str, password: str = PASSWORD) -> TestResponse:
    form = {"username": username, "password": password}
    return client.post(f"/clinic/subjects/{subject.id}/verify", data=form)


def test_the_enroller_cannot_verify_their_own_enrollment(
    coordinator: FlaskClient, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    response = verify(coordinator, subject, "coordinator")
    assert response.status_code == 422
    page = text_of(response)
    assert "coordinator performed the enrollment of ALS-001 and cannot also verify it" in page
    assert "a second person must sign" in page
    assert signatures(session_factory, "verified") == []
    assert "a second person must sign" in refusals(session_factory)[-1]["message"]
    assert len(signature_rows(page)) == 1  # the refusal page still shows the record


def test_a_second_coordinator_verifies_with_own_credentials(
    coordinator: FlaskClient, world: World, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    response = verify(coordinator, subject, "coordinator2")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/clinic/subjects/{subject.id}"
    page = text_of(coordinator.get(response.headers["Location"]))
    assert "Enrollment verified by a second person." in page
    rows = signature_rows(page)
    assert len(rows) == 2
    assert rows[1].startswith(f"{world.users['coordinator2'].full_name} Clinical site coordinator verified")
    assert all(row.endswith("valid") for row in rows)
    [verified] = signatures(session_factory, "verified")
    assert verified["signer_id"] == world.users["coordinator2"].id
    audit_ok(session_factory)


def test_an_investigator_can_verify(
    app: Flask, world: World, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    client = app.test_client()
    login(client, "investigator")
    assert verify(client, subject, "investigator").status_code == 302
    rows = signature_rows(text_of(client.get(f"/clinic/subjects/{subject.id}")))
    assert rows[1].startswith(f"{world.users['investigator'].full_name} Investigator verified")
    verified = signatures(session_factory, "verified")
    assert [s["signer_id"] for s in verified] == [world.users["investigator"].id]


def test_other_roles_credentials_cannot_verify(
    coordinator: FlaskClient,
    subject: Subject,
    session_factory: sessionmaker[Session],
    subtests: pytest.Subtests,
) -> None:
    for username, message in [
        (
            "technician",
            "technician (technician) cannot verify an enrollment: a coordinator or investigator must",
        ),
        ("qa", "qa (qa) cannot verify an enrollment"),
        ("nurse", "nurse (nurse) cannot verify an enrollment"),
        ("admin", "the Administrator role cannot perform GMP actions"),
    ]:
        with subtests.test(username=username):
            response = verify(coordinator, subject, username)
            assert response.status_code in (403, 422)
            assert message in text_of(response)
            assert signatures(session_factory, "verified") == []
            assert coordinator.get("/").status_code == 200  # the signed-in coordinator stays signed in


def test_verification_with_a_wrong_password_is_refused_and_counted(
    coordinator: FlaskClient, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    response = verify(coordinator, subject, "coordinator2", WRONG)
    assert response.status_code == 422
    assert "password for coordinator2 is wrong: not signed" in text_of(response)
    assert signatures(session_factory, "verified") == []
    assert failed_logins(session_factory, "coordinator2") == 1
    assert failed_logins(session_factory, "coordinator") == 0


def test_verification_by_an_unknown_or_blank_username_is_refused(
    coordinator: FlaskClient, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    assert "no account named 'ghost' to sign with" in text_of(verify(coordinator, subject, "ghost"))
    assert verify(coordinator, subject, "").status_code == 422
    assert signatures(session_factory, "verified") == []


def test_a_locked_verifier_cannot_sign(
    app: Flask, coordinator: FlaskClient, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    other = app.test_client()
    for _ in range(5):
        login(other, "coordinator2", WRONG)
    response = verify(coordinator, subject, "coordinator2")
    assert response.status_code == 422
    assert "cannot sign: it is locked or deactivated" in text_of(response)
    assert signatures(session_factory, "verified") == []


# --- corrections ----------------------------------------------------------------------------------------


def correct(client: FlaskClient, subject: Subject, **data: str) -> TestResponse:
    return client.post(f"/clinic/subjects/{subject.id}/correct", data=data)


def test_a_correction_invalidates_earlier_signatures_and_keeps_the_old_value(
    coordinator: FlaskClient, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    assert verify(coordinator, subject, "coordinator2").status_code == 302
    response = correct(
        coordinator,
        subject,
        field="name",
        new_value="Jordan Q. Example",
        reason="middle initial missed at transcription",
    )
    assert response.status_code == 302
    page = text_of(coordinator.get(f"/clinic/subjects/{subject.id}"))
    assert "Corrected; the old value stays in the audit trail." in page
    assert "<dt>Name</dt><dd>Jordan Q. Example</dd>" in page
    rows = signature_rows(page)
    assert len(rows) == 2
    for row in rows:
        assert "INVALID the record has changed since it was signed" in row
    trail = trail_section(page)
    assert '"name":["Jordan Example","Jordan Q. Example"]' in trail
    assert "middle initial missed at transcription" in trail
    assert [s["name"] for s in subjects(session_factory)] == ["Jordan Q. Example"]
    audit_ok(session_factory)

    # a new verification signs the corrected record and shows as valid
    assert verify(coordinator, subject, "coordinator2").status_code == 302
    rows = signature_rows(text_of(coordinator.get(f"/clinic/subjects/{subject.id}")))
    assert [row.endswith("valid") and "INVALID" not in row for row in rows] == [False, False, True]


def test_a_correction_without_a_reason_is_refused(
    coordinator: FlaskClient, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    for reason in ("", "   "):
        response = correct(coordinator, subject, field="name", new_value="Someone Else", reason=reason)
        assert response.status_code == 422
        page = text_of(response)
        assert "Reason for the correction is required" in page
        assert 'value="Someone Else"' in page  # what was typed stays on the screen
    assert [s["name"] for s in subjects(session_factory)] == ["Jordan Example"]
    rows = signature_rows(text_of(coordinator.get(f"/clinic/subjects/{subject.id}")))
    assert rows[0].endswith("valid")
    assert [r["message"] for r in refusals(session_factory)] == ["Reason for the correction is required"] * 2
    audit_ok(session_factory)


def test_a_correction_to_the_same_value_changes_nothing(
    coordinator: FlaskClient, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    response = correct(coordinator, subject, field="name", new_value="Jordan Example", reason="checked")
    assert response.status_code == 302
    page = text_of(coordinator.get(response.headers["Location"]))
    assert "No change: same value." in page
    assert signature_rows(page)[0].endswith("valid")


def test_a_date_correction_is_stored_as_a_date(
    coordinator: FlaskClient, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    response = correct(
        coordinator, subject, field="date_of_birth", new_value="1961-04-21", reason="transposed digits"
    )
    assert response.status_code == 302
    page = text_of(coordinator.get(response.headers["Location"]))
    assert "<dt>Date of birth</dt><dd>1961-04-21</dd>" in page
    assert '"date_of_birth":["1961-04-12","1961-04-21"]' in trail_section(page)
    audit_ok(session_factory)


def test_a_correction_is_held_to_the_enrollment_rules(
    coordinator: FlaskClient,
    world: World,
    subject: Subject,
    session_factory: sessionmaker[Session],
    subtests: pytest.Subtests,
) -> None:
    tomorrow = (clock.now().date() + timedelta(days=1)).isoformat()
    for case, field, new_value, message in [
        ("future consent", "consent_date", tomorrow, f"consent date {tomorrow} is in the future"),
        ("future birth", "date_of_birth", tomorrow, f"date of birth {tomorrow} is not possible"),
        ("birth after consent", "date_of_birth", "2026-10-02", "consent date is before the date of birth"),
        ("malformed MRN", "medical_record_number", "M R N !", "the medical record number must be 3-40"),
        ("over-long MRN", "medical_record_number", "M" * 100, "the medical record number must be 3-40"),
        ("manufacturing site", "site_id", str(world.manufacturing.id), "choose the clinical site"),
        ("one-letter name", "name", "J", "the subject's full name is required"),
    ]:
        with subtests.test(case=case):
            response = correct(coordinator, subject, field=field, new_value=new_value, reason="test")
            assert response.status_code == 422
            assert message in text_of(response)
            with session_factory() as s:
                stored = s.get(Subject, subject.id)
                assert stored is not None
                assert getattr(stored, field) == getattr(subject, field)
    rows = signature_rows(text_of(coordinator.get(f"/clinic/subjects/{subject.id}")))
    assert rows[0].endswith("valid")  # nothing changed, so the enrollment signature still holds
    audit_ok(session_factory)


# --- scanning -------------------------------------------------------------------------------------------


def test_scanning_a_coi_barcode_opens_the_subject(coordinator: FlaskClient, subject: Subject) -> None:
    response = coordinator.get("/scan?code=" + quote("&/CH" + subject.coi_identifier, safe=""))
    assert response.status_code == 302
    assert response.headers["Location"] == f"/clinic/subjects/{subject.id}"


def test_typing_the_identifier_with_its_check_character_opens_the_subject(
    coordinator: FlaskClient, subject: Subject
) -> None:
    identifier = subject.coi_identifier
    check = isbt128.build_coi(identifier[:5], int(identifier[5:7]), identifier[7:]).check_character
    response = coordinator.get("/scan?code=" + quote(identifier + check, safe=""))
    assert response.headers["Location"] == f"/clinic/subjects/{subject.id}"
    wrong = "0" if check != "0" else "1"
    response = coordinator.get("/scan?code=" + quote(identifier + wrong, safe=""))
    assert response.status_code == 302
    assert "wrong check character" in text_of(coordinator.get(response.headers["Location"]))


def test_a_garbage_scan_is_refused_visibly_and_recorded(
    coordinator: FlaskClient,
    subject: Subject,
    session_factory: sessionmaker[Session],
    subtests: pytest.Subtests,
) -> None:
    for code in ["garbage", "=A99992612345600", "&/CHA999926"]:
        with subtests.test(code=code):
            refused_before = len(refusals(session_factory))
            response = coordinator.get(
                "/scan?code=" + quote(code, safe=""), headers={"Referer": "/clinic/subjects"}
            )
            assert response.status_code == 302
            assert response.headers["Location"] == "/clinic/subjects"
            page = text_of(coordinator.get(response.headers["Location"]))
            assert f"Scan refused: {code!r} is not a chain of identity identifier" in page
            recorded = refusals(session_factory)
            assert len(recorded) == refused_before + 1
            assert recorded[-1]["actor"] == "coordinator"
            assert recorded[-1]["endpoint"] == "home.scan"
            assert f"{code!r} is not a chain of identity identifier" in recorded[-1]["message"]


def test_scanning_an_unknown_subject_says_so(
    coordinator: FlaskClient, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    unknown = "A999926ZZZZZZ" if subject.coi_identifier != "A999926ZZZZZZ" else "A999926YYYYYY"
    response = coordinator.get("/scan?code=" + quote("&/CH" + unknown, safe=""))
    assert response.status_code == 302
    page = text_of(coordinator.get(response.headers["Location"]))
    assert f"no subject has chain of identity {unknown}" in page
    assert refusals(session_factory)[-1]["refusal"] == "NotFound"


def test_an_empty_scan_asks_for_a_code(coordinator: FlaskClient) -> None:
    response = coordinator.get("/scan?code=+")
    assert response.status_code == 302
    assert "Scan or type a code first." in text_of(coordinator.get(response.headers["Location"]))


def test_the_api_finds_a_subject_by_coi(app: Flask, subject: Subject) -> None:
    client = app.test_client()
    login(client, "pharmacist")
    identifier = subject.coi_identifier
    response = client.get(f"/api/subjects/by-coi/{identifier}")
    assert response.status_code == 200
    check = isbt128.build_coi(identifier[:5], int(identifier[5:7]), identifier[7:]).check_character
    assert response.get_json() == {
        "study_subject_id": "ALS-001",
        "coi": identifier,
        "coi_check_character": check,
        "status": "enrolled",
    }


def test_a_batch_starts_only_from_a_verified_enrollment(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: object
) -> None:
    """Both reviews: a batch started, and a dose was made, for an enrollment nobody verified; and whoever
    corrected the identity data verified their own correction."""
    from mfg.errors import Refusal
    from mfg.process import batches
    from mfg.study import service as study_service

    with pytest.raises(Refusal, match="enrollment is not verified by a second person"):
        batches.start_batch(session, world.users["coordinator"], subject, study)
    session.rollback()
    study_service.verify_enrollment(session, world.users["investigator"], PASSWORD, subject)
    session.commit()
    study_service.correct_subject(
        session, world.users["investigator"], subject, "typo", name="Jordan Exampel"
    )
    session.commit()
    # the correction voids the verification; the corrector cannot verify it
    with pytest.raises(Refusal, match="enrollment is not verified"):
        batches.start_batch(session, world.users["coordinator"], subject, study)
    session.rollback()
    with pytest.raises(Refusal, match="corrected ALS-001's identity data: another person verifies"):
        study_service.verify_enrollment(session, world.users["investigator"], PASSWORD, subject)
    session.rollback()
    other = make_user(session, "coordinator", "coordinator3")
    session.commit()
    study_service.verify_enrollment(session, other, PASSWORD, subject)
    session.commit()
    assert batches.start_batch(session, world.users["coordinator"], subject, study) is not None
