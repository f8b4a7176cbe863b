"""Accounts, logins and e-signatures. Every function writes its audit events; none commits."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session, sessionmaker

from mfg import clock
from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.errors import NotFound, PermissionRefused, Refusal, SignatureRefused, ValidationRefused
from mfg.identity import passwords, rules
from mfg.identity.models import Signature, User

DEFAULT_LOCKOUT_THRESHOLD = 5
LOCKOUT_THRESHOLD_INFO = "mfg.lockout_threshold"  # key in Session.info, set once by configure_sessions


def configure_sessions(factory: sessionmaker[Session], *, lockout_threshold: int) -> None:
    """Bind the facility's lockout threshold to every session ``factory`` makes, once, at start-up.

    Logins and e-signatures count wrong passwords against the same threshold (MFG_LOCKOUT_THRESHOLD). The
    signing services (steps, deviations, enrollment, dose orders, MBR approval, line clearance) all end in
    ``sign``; carrying the setting on the session means none of their callers can forget it."""
    factory.configure(info={LOCKOUT_THRESHOLD_INFO: lockout_threshold})


def lockout_threshold(session: Session) -> int:
    """The threshold ``configure_sessions`` bound to this session (the default for a bare session)."""
    return int(session.info.get(LOCKOUT_THRESHOLD_INFO, DEFAULT_LOCKOUT_THRESHOLD))


USERNAME_PATTERN = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")


#: The one answer to a refused login: it never says whether the account exists, is locked or is deactivated.
#: The audit trail keeps the precise reason for the administrator.
LOGIN_REFUSED = "username or password is wrong, or the account cannot sign in: ask an administrator"


class LoginRefused(Refusal):
    """Login refused; the wording never tells an attacker whether the username exists."""


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no account named {username!r}", entity_type="user_account")
    return user


def create_user(
    session: Session,
    actor: str,
    *,
    username: str,
    full_name: str,
    role: str,
    password: str,
    one_time: bool = True,
) -> User:
    """A new account. Its password is ``one_time`` unless the caller says otherwise: whoever typed it (the
    administrator) must not be able to sign as the holder, who chooses their own at first sign-in. Only
    set-ups where nobody else signs in (the demo, test fixtures) make accounts ready to use."""
    username = username.strip()
    if not USERNAME_PATTERN.match(username):
        raise ValidationRefused(
            f"username {username!r} is not allowed: use 2-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter",
            entity_type="user_account",
        )
    if role not in rules.ROLES:
        raise ValidationRefused(
            f"unknown role {role!r}: choose one of {', '.join(rules.ROLES)}", entity_type="user_account"
        )
    if not full_name.strip():
        raise ValidationRefused(
            "the full name is required: it is printed with every signature", entity_type="user_account"
        )
    problem = passwords.password_problem(password)
    if problem:
        raise ValidationRefused(problem, entity_type="user_account")
    if session.scalar(select(func.count()).select_from(User).where(User.username == username)):
        raise ValidationRefused(
            f"username {username!r} already exists: accounts are never reused", entity_type="user_account"
        )
    user = User(
        username=username,
        full_name=full_name.strip(),
        role=role,
        password_hash=passwords.hash_password(password),
        active=True,
        failed_logins=0,
        locked=False,
        created_at=clock.now(),
        password_must_change=one_time,
    )
    return audit_service.create(session, actor, user)


def deactivate_user(session: Session, actor: str, username: str, reason: str) -> User:
    user = get_user(session, username)
    if not user.active:
        raise ValidationRefused(
            f"{username} is already deactivated", entity_type="user_account", entity_id=str(user.id)
        )
    audit_service.update(
        session,
        actor,
        user,
        reason=reason,
        action="deactivate",
        active=False,
        session_version=user.session_version + 1,  # signed out everywhere, at once
    )
    return user


def unlock_user(session: Session, actor: str, username: str, reason: str) -> User:
    user = get_user(session, username)
    if not user.locked:
        raise ValidationRefused(
            f"{username} is not locked", entity_type="user_account", entity_id=str(user.id)
        )
    audit_service.update(
        session,
        actor,
        user,
        reason=reason,
        action="unlock",
        locked=False,
        failed_logins=0,
        # a session from before the lock (perhaps the guesser's) does not come back with the unlock
        session_version=user.session_version + 1,
    )
    return user


PASSWORD_CHANGE = "password change"  # where a wrong current password is counted, as logins and signatures are


def one_time_password_problem(user: User) -> str:
    """Why ``user`` may do nothing yet but choose a password, or "" (DESIGN §7: whoever set a password, an
    administrator, must not be able to act as its holder)."""
    if not user.password_must_change:
        return ""
    return (
        f"{user.username}'s password was set by an administrator and works only to choose a new one: "
        f"{user.username} must sign in and choose their own password first"
    )


def choose_password(
    session: Session,
    user: User,
    current_password: str,
    new_password: str,
    new_password_again: str,
    *,
    threshold: int | None = None,
    where: str = PASSWORD_CHANGE,
) -> User:
    """The holder replaces their password, the one-time one an administrator set or their own. The only way
    the one-time flag clears. Every session of the account ends (a copy of the old cookie, or the
    administrator's session as this account, stops working); a wrong current password counts towards the
    lockout as a wrong login does. ``where`` (the terminal) is on record with the change and any failure."""
    if threshold is None:
        threshold = lockout_threshold(session)
    about = {"entity_type": "user_account", "entity_id": str(user.id)}
    if not user.active or user.locked:
        raise PermissionRefused(f"account {user.username} is locked or deactivated", **about)
    if not current_password:
        raise ValidationRefused("enter your current password", **about)
    if not passwords.password_matches(user.password_hash, current_password):
        raise _refuse_password(
            user,
            user.username,
            where,
            threshold,
            "your current password is wrong: the password is not changed",
            ValidationRefused,
        )
    if new_password != new_password_again:
        raise ValidationRefused("the new password and its repetition differ: type both again", **about)
    problem = passwords.password_problem(new_password)
    if problem:
        raise ValidationRefused(problem, **about)
    if new_password == current_password:
        raise ValidationRefused(
            "the new password must differ from the current one"
            + (", which an administrator chose" if user.password_must_change else ""),
            **about,
        )
    audit_service.update(
        session,
        user.username,
        user,
        action="password_change",
        reason="replaced the one-time password an administrator set"
        if user.password_must_change
        else "changed own password",
        detail={"where": where},
        password_hash=passwords.hash_password(new_password),  # the trail keeps only a digest of the hash
        password_must_change=False,
        failed_logins=0,
        session_version=user.session_version + 1,  # signed out everywhere, this terminal too
    )
    return user


def end_sessions(
    session: Session, user: User, *, action: str, reason: str, detail: Mapping[str, Any] | None = None
) -> None:
    """End every session of ``user`` on the server: the version their cookies carry no longer matches.
    Used for logout and the idle sign-out; the event is recorded as ``action``."""
    audit_service.update(
        session,
        user.username,
        user,
        action=action,
        reason=reason,
        detail=detail,
        session_version=user.session_version + 1,
    )


def register_failed_password(
    session: Session,
    user_id: int | None,
    attempted_username: str,
    where: str,
    threshold: int = DEFAULT_LOCKOUT_THRESHOLD,
) -> None:
    """Count a wrong password (login or signature); lock the account at the threshold. Always recorded."""
    user = session.get(User, user_id) if user_id is not None else None
    if user is None:
        audit_service.record_event(
            session,
            # whatever was typed is evidence, but it must fit the column: keep a bounded prefix
            actor=(attempted_username or "(blank)")[:64],
            action="login_failed",
            entity_type="user_account",
            entity_id="",
            detail={"username": attempted_username[:200], "where": where, "why": "unknown username"},
        )
        return
    count = user.failed_logins + 1
    locking = count >= threshold and not user.locked
    audit_service.update(
        session,
        user.username,
        user,
        action="lockout" if locking else "login_failed",
        reason=f"wrong password at {where}" + (f": {count} failures, account locked" if locking else ""),
        detail={"where": where},
        failed_logins=count,
        locked=user.locked or locking,
        session_version=user.session_version + (1 if locking else 0),
    )


def _refuse_password(
    user: User | None, username: str, where: str, threshold: int, message: str, refusal_type: type[Refusal]
) -> Refusal:
    refusal = refusal_type(message, entity_type="user_account", entity_id=str(user.id) if user else "")
    user_id = user.id if user else None

    def count_failure(session: Session) -> None:
        register_failed_password(session, user_id, username, where, threshold)

    refusal.after_rollback.append(count_failure)
    refusal.record = False  # the failure event says it all
    return refusal


def _refuse_account(user: User, why: str, where: str) -> Refusal:
    """A login to an account that cannot sign in: the generic answer, the precise reason on record."""
    refusal = LoginRefused(LOGIN_REFUSED, entity_type="user_account", entity_id=str(user.id))
    user_id, username = user.id, user.username

    def record(session: Session) -> None:
        audit_service.record_event(
            session,
            actor=username,
            action="login_refused",
            entity_type="user_account",
            entity_id=str(user_id),
            detail={"where": where, "why": why},
        )

    refusal.after_rollback.append(record)
    refusal.record = False  # the event above says it all
    return refusal


def authenticate(
    session: Session,
    username: str,
    password: str,
    *,
    threshold: int | None = None,
    where: str = "login",
) -> User:
    """Check a login. On success the failure counter resets; on failure it is counted after the view's
    work is undone, in the same locked transaction (the refusal's ``after_rollback``).
    ``threshold`` defaults to the session's configured one (``configure_sessions``)."""
    if threshold is None:
        threshold = lockout_threshold(session)
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None or user.locked or not user.active:
        # The same work and the same answer as a wrong password: neither the time taken nor the words tell an
        # anonymous caller whether the account exists or why it cannot sign in. The trail says why.
        passwords.spend_a_verification(password)
        if user is None:
            raise _refuse_password(None, username, where, threshold, LOGIN_REFUSED, LoginRefused)
        raise _refuse_account(user, "account locked" if user.locked else "account deactivated", where)
    if not passwords.password_matches(user.password_hash, password):
        raise _refuse_password(user, username, where, threshold, LOGIN_REFUSED, LoginRefused)
    rehashed = (
        {"password_hash": passwords.hash_password(password)}
        if passwords.needs_rehash(user.password_hash)
        else {}
    )
    audit_service.update(
        session,
        user.username,
        user,
        action="login",
        reason="successful login",
        # with a one-time password the session opens only the page to replace it; on record whoever it was
        detail={
            "where": where,
            **({"one_time_password": True} if user.password_must_change else {}),
            **({"rehashed": "with the server's Argon2 settings"} if rehashed else {}),
        },
        failed_logins=0,
        last_login_at=clock.now(),
        **rehashed,
    )
    return user


# --- e-signatures ---------------------------------------------------------------------------------------


def signed_content(obj: Any, meaning: str = "", signed_extra: Any = None) -> dict[str, Any]:
    """What a signature covers: the record's signed fields (per meaning where the model says so).

    ``signed_extra``, when the caller already holds it (a page loading many records at once), saves the
    model's own query for it."""
    fields = audit_service.snapshot(obj)
    by_meaning = getattr(type(obj), "__signed_fields_by_meaning__", {})
    chosen = by_meaning.get(meaning) or getattr(type(obj), "__signed_fields__", None)
    content: dict[str, Any] = {k: fields[k] for k in chosen} if chosen else fields
    extra = getattr(obj, "signed_extra", None)
    if signed_extra is not None:
        content["signed_extra"] = signed_extra
    elif extra is not None:
        session = object_session(obj)
        assert session is not None
        session.flush()
        content["signed_extra"] = extra(session)
    return content


def sign(
    session: Session,
    signer: User,
    password: str,
    meaning: str,
    obj: Any,
    *,
    comment: str | None = None,
    threshold: int | None = None,
    seen: str | None = None,
) -> Signature:
    """Apply an e-signature. The password is asked again every time (Part 11 §11.200). Wrong passwords count
    towards the same lockout as logins: ``threshold``, by default the session's configured one. ``seen`` is
    the content hash of the version the signer's page showed (``content_hash``): a record changed since is
    refused, so a signature covers what the signer looked at."""
    if threshold is None:
        threshold = lockout_threshold(session)
    rules.require_gmp_actor(signer.role)
    if meaning not in rules.MEANINGS:
        raise ValidationRefused(f"unknown signature meaning {meaning!r}")
    if not signer.active or signer.locked:
        raise SignatureRefused(f"account {signer.username} cannot sign: it is locked or deactivated")
    one_time = one_time_password_problem(signer)
    if one_time:
        raise SignatureRefused(
            f"not signed: {one_time}", entity_type="user_account", entity_id=str(signer.id)
        )
    if not password:
        raise SignatureRefused("enter your password to sign", entity_type="signature")
    if not passwords.password_matches(signer.password_hash, password):
        raise _refuse_password(
            signer,
            signer.username,
            f"{meaning} signature",
            threshold,
            f"password for {signer.username} is wrong: not signed",
            SignatureRefused,
        )
    session.flush()
    entity_type = audit_service.entity_type_of(obj)
    entity_id = audit_service.entity_id_of(obj)
    content = signed_content(obj, meaning)
    content_sha256 = rules.content_sha256(entity_type, entity_id, content)
    if seen is not None and seen != content_sha256:
        raise SignatureRefused(
            "the record changed after your page showed it: look at it again before you sign",
            entity_type=entity_type,
            entity_id=entity_id,
        )
    _refuse_a_replay(session, entity_type, entity_id, meaning, content_sha256, content)
    signature = Signature(
        signer_id=signer.id,
        printed_name=signer.full_name,
        signer_role=signer.role,
        signed_at=clock.now(),
        meaning=meaning,
        entity_type=entity_type,
        entity_id=entity_id,
        content_sha256=content_sha256,
        comment=comment,
    )
    return audit_service.create(session, signer.username, signature)


def content_hash(obj: Any, meaning: str, signed_extra: Any = None) -> str:
    """What a ``meaning`` signature on ``obj`` would cover now, hashed: a page that offers the signature
    sends it back as ``seen``."""
    entity_type, entity_id = audit_service.entity_type_of(obj), audit_service.entity_id_of(obj)
    return rules.content_sha256(entity_type, entity_id, signed_content(obj, meaning, signed_extra))


def _refuse_a_replay(
    session: Session,
    entity_type: str,
    entity_id: str,
    meaning: str,
    content_sha256: str,
    content: Mapping[str, Any],
) -> None:
    """One signature of a meaning per version of a record: the same verification posted again is refused. A
    record changed and changed back is a new version (its earlier signature is invalid for good): it may be
    signed again."""
    earlier_ones = list(
        session.scalars(
            select(Signature).where(
                Signature.entity_type == entity_type,
                Signature.entity_id == entity_id,
                Signature.meaning == meaning,
                Signature.content_sha256 == content_sha256,
            )
        )
    )
    changed_after = _changes_after(session, entity_type, earlier_ones)
    earlier = next((sig for sig in earlier_ones if not changed_after(sig, content)), None)
    if earlier is not None:
        raise SignatureRefused(
            f"this version of the record is already signed '{meaning}' by {earlier.printed_name} "
            f"at {earlier.signed_at:%Y-%m-%d %H:%M} UTC: not signed again",
            entity_type=entity_type,
            entity_id=entity_id,
        )


def find_signer(session: Session, username: str) -> User:
    """The second person at a shared terminal identifies by username and password, not by the session."""
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None:
        raise SignatureRefused(f"no account named {username!r} to sign with")
    return user


@dataclass(frozen=True)
class SignatureView:
    signature: Signature
    valid: bool
    why: str


def signatures_for_many(
    session: Session, objs: Sequence[Any], signed_extras: Mapping[str, Any] | None = None
) -> dict[str, list[SignatureView]]:
    """The signatures of many records of one type, by entity id, judged in three queries (a page's worth).

    A signature is valid while the record's signed content hashes as it did, and no change to a signed field
    was recorded after it: it binds to the version it signed, so a value changed and changed back leaves it
    invalid for good (DESIGN §7)."""
    if not objs:
        return {}
    entity_type = audit_service.entity_type_of(objs[0])
    by_id = {audit_service.entity_id_of(obj): obj for obj in objs}
    views: dict[str, list[SignatureView]] = {entity_id: [] for entity_id in by_id}
    extras = signed_extras or {}
    signatures = list(
        session.scalars(
            select(Signature)
            .where(Signature.entity_type == entity_type, Signature.entity_id.in_(list(by_id)))
            .order_by(Signature.signed_at, Signature.id)
        )
    )
    changed_after = _changes_after(session, entity_type, signatures)
    for signature in signatures:
        obj = by_id[signature.entity_id]
        content = signed_content(obj, signature.meaning, extras.get(signature.entity_id))
        valid = rules.content_sha256(entity_type, signature.entity_id, content) == signature.content_sha256
        why = "" if valid else "the record has changed since it was signed"
        if valid and changed_after(signature, content):
            valid, why = False, "the record was changed after it was signed (even if changed back since)"
        views[signature.entity_id].append(SignatureView(signature, valid, why))
    return views


def _changes_after(
    session: Session, entity_type: str, signatures: list[Signature]
) -> Callable[[Signature, Mapping[str, Any]], bool]:
    """Whether a change to any of the signed fields was recorded after the signature's own audit event."""
    if not signatures:
        return lambda _signature, _content: False
    signed_at_event = dict(
        session.execute(
            select(AuditEvent.entity_id, AuditEvent.id).where(
                AuditEvent.entity_type == "signature",
                AuditEvent.action == "create",
                AuditEvent.entity_id.in_([str(sig.id) for sig in signatures]),
            )
        ).all()
    )
    first = min(signed_at_event.values(), default=0)
    later: dict[str, list[tuple[int, set[str]]]] = {}
    for entity_id, event_id, changes in session.execute(
        select(AuditEvent.entity_id, AuditEvent.id, AuditEvent.changes).where(
            AuditEvent.entity_type == entity_type,
            AuditEvent.entity_id.in_({sig.entity_id for sig in signatures}),
            AuditEvent.action != "create",
            AuditEvent.id > first,
        )
    ):
        later.setdefault(entity_id, []).append((event_id, set(json.loads(changes))))

    def changed(signature: Signature, content: Mapping[str, Any]) -> bool:
        since = signed_at_event.get(str(signature.id), 0)
        return any(
            event_id > since and fields & set(content)
            for event_id, fields in later.get(signature.entity_id, [])
        )

    return changed


def signatures_for(session: Session, obj: Any) -> list[SignatureView]:
    """One record's signatures, each judged valid or not against the record as it is now."""
    return signatures_for_many(session, [obj]).get(audit_service.entity_id_of(obj), [])


def require_can_act(user: User) -> None:
    rules.require_gmp_actor(user.role)
    if not user.active:
        raise PermissionRefused(f"account {user.username} is deactivated")
    one_time = one_time_password_problem(user)
    if one_time:
        raise PermissionRefused(one_time, entity_type="user_account", entity_id=str(user.id))
