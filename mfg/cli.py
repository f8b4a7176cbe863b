"""The `mfg` command: database set-up, the terminal server, accounts and the audit check.

Every command uses MFG_DATABASE_URL when it is set, else the SQLite file in the instance folder.
A command that writes is one unit of work (``session_scope``): it commits once at its end, or rolls back.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import click
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from mfg import PROJECT_ROOT
from mfg import config as mfg_config
from mfg.db import make_engine, make_session_factory, session_scope
from mfg.errors import Refusal


def _actor() -> str:
    # Commands run by a system administrator at the server; the OS account is who acted.
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(url: str) -> None:
    alembic_command.upgrade(alembic_config(url), "head")


def database_is_current(engine: Engine, url: str) -> bool:
    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads


def prepare(url: str, *, notes_to_stderr: bool = False) -> None:
    """What `mfg init` does, as the schema's owner (MFG_ADMIN_DATABASE_URL when set): migrate; grant the
    application's role (the user of ``url``) its rights when it is another role; make the audit key if there
    is none (mode 0600); key the trail from here on if it was written before the key existed; and bring the
    package's new MBR versions to QA as drafts. Its notes go to stderr where stdout is data (``mfg demo``)."""
    from mfg import db_roles
    from mfg.audit import key as audit_key
    from mfg.audit import service as audit_service
    from mfg.process import versions

    def note(message: str) -> None:
        click.echo(message, err=notes_to_stderr)

    owner_url = mfg_config.owner_database_url()
    if not db_roles.same_database(url, owner_url):
        _fail("MFG_ADMIN_DATABASE_URL and MFG_DATABASE_URL name different databases")
    upgrade_database(owner_url)
    engine = make_engine(owner_url)
    _grant_application_role(url, owner_url, engine, note)
    path = audit_key.key_path()
    if not path.exists():
        with make_session_factory(engine)() as session:
            keyed = audit_service.keyed_events_exist(session)
        if keyed:
            # A new key would leave every event written so far unverifiable and start a second chain of trust.
            _fail(
                f"no audit key at {path}, but this database's audit trail was written with one: put that key "
                "back (or point MFG_AUDIT_KEY_FILE at it); a new key is made only for a trail that has none"
            )
    if audit_key.create_key_file(path):
        note(f"audit key created at {path} (mode 0600): back it up, away from the database backups")
    key = audit_key.load_key(path)
    audit_key.use_key(key)
    _require_the_trails_key(engine, path, key)
    with session_scope(make_session_factory(engine)) as session:
        covered = audit_service.introduce_key(session, _actor())
        drafts = [f"{v.code} v{v.version}" for v in versions.register_packaged(session, _actor())]
    if covered:
        note(f"audit trail keyed from here on; {covered} earlier events rest on its SHA-256 chain")
    for draft in drafts:
        note(f"master batch record {draft} registered as a draft: QA approves it before use")


def _require_the_trails_key(engine: Engine, path: Path, key: bytes) -> None:
    """Nothing is written under a key that did not write the trail (another facility's, a new one)."""
    from mfg.audit import service as audit_service

    with make_session_factory(engine)() as session:
        problem = audit_service.key_problem(session, key)
    if problem:
        _fail(f"the audit key at {path} is not this database's: {problem}; put the right key back")


def _grant_application_role(app_url: str, owner_url: str, owner: Engine, note: Callable[[str], None]) -> None:
    """Where the application connects as another role than the owner (PostgreSQL in production), grant it
    rows only: after every migration (new tables) and every restore (the archive carries no grants)."""
    from mfg import db_roles

    app_role, owner_role = db_roles.role_of(app_url), db_roles.role_of(owner_url)
    if owner.dialect.name != "postgresql" or not app_role or app_role == owner_role:
        return
    try:
        db_roles.grant_application_role(owner, app_role)
    except LookupError as exc:
        _fail(str(exc))
    note(f"database role {app_role}: rows only (no DDL; the audit trail: SELECT and INSERT)")


def _engine() -> tuple[str, Engine]:
    url = mfg_config.database_url()
    return url, make_engine(url)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group(help="Manufacturing execution system for autologous cell therapy.")
def cli() -> None:
    pass


def main() -> None:
    """Entry point: database trouble is reported in one line, not as a stack trace."""
    from mfg import capabilities
    from mfg.audit.key import AuditKeyMissing
    from mfg.backup import BackupError

    capabilities.install()
    try:
        cli()
    except (AuditKeyMissing, BackupError) as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        _fail(f"database problem: {detail}")


@cli.command(
    help="Create the database or upgrade it to the latest migration, and the audit key if missing "
    "(safe to repeat)."
)
def init() -> None:
    url, engine = _engine()
    prepare(url)
    click.echo(f"database ready at revision head ({engine.url.render_as_string(hide_password=True)})")


@cli.command(help="Run the terminal server (waitress).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
@click.option(
    "--demo", is_flag=True, help="Initialise the database and seed demo users, sites and a subject."
)
def serve(host: str, port: int, threads: int, demo: bool) -> None:
    import waitress

    from mfg import create_app

    _require_free_port(host, port)  # before the demo seeds anything
    url, engine = _engine()
    if demo:
        prepare(url)
        from mfg.demo import DEMO_PASSWORD, seed_demo

        with session_scope(make_session_factory(engine)) as session:
            users = seed_demo(session, _actor())
        click.echo(
            "Demo data ready. Sign in with any of these usernames, password " + repr(DEMO_PASSWORD) + ":"
        )
        for username, role in users:
            click.echo(f"  {username:<12} {role}")
    elif not database_is_current(engine, url):
        _fail("the database is not initialised or not at the latest migration: run `mfg init` first")
    else:
        from mfg.audit import key as audit_key

        path = audit_key.key_path()
        _require_the_trails_key(engine, path, audit_key.load_key(path))
    _warn_of_excess_rights(engine)
    app = create_app()
    click.echo(f"MFG terminal on http://{host}:{port}/  (Ctrl+C stops it)")
    try:
        waitress.serve(app, host=host, port=port, threads=threads, ident="mfg")
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def _require_free_port(host: str, port: int) -> None:
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port)")


def _warn_of_excess_rights(engine: Engine) -> None:
    from mfg import db_roles

    reasons = db_roles.excess_rights(engine)
    if reasons:
        click.echo(
            "warning: the application's database role could switch off the audit trail's protection ("
            + "; ".join(reasons)
            + "): in production connect as a role without DDL rights (README: production set-up)",
            err=True,
        )


@cli.command(
    help="Run the reference scenario through the service layer; write label PDFs; print a JSON summary."
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the label PDFs.",
)
def demo(out_dir: Path) -> None:
    import json

    from mfg.demo import run_reference_scenario

    url, engine = _engine()
    prepare(url, notes_to_stderr=True)
    try:
        with session_scope(make_session_factory(engine)) as session:
            summary, files = run_reference_scenario(session, out_dir.resolve(), _actor())
    except Refusal as exc:
        _fail(f"the scenario was refused: {exc.message}")
    # Labels are written once what they print is committed.
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, pdf in files.items():
        path.write_bytes(pdf)
    click.echo(json.dumps(summary, indent=2, ensure_ascii=False))


@cli.group(
    help="Accounts: add (with a one-time password, replaced by its holder at first sign-in) and deactivate. "
    "Accounts are never deleted."
)
def user() -> None:
    pass


@user.command("add")
@click.argument("username")
@click.option("--name", "full_name", required=True, help="Full name, printed with every signature.")
@click.option("--role", required=True, help="One of the roles (technician, supervisor, qa, ... admin).")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the one-time password from standard input (the holder replaces it at first sign-in).",
)
def user_add(username: str, full_name: str, role: str, password_stdin: bool) -> None:
    from mfg.identity import service as identity_service

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("One-time password", hide_input=True, confirmation_prompt=True)
    _url, engine = _engine()
    try:
        with session_scope(make_session_factory(engine)) as session:
            created = identity_service.create_user(
                session,
                _actor(),
                username=username,
                full_name=full_name,
                role=role,
                password=password,
                one_time=True,  # whoever typed it must not be able to sign as the holder
            )
            done = (
                f"account {created.username} ({created.role}) created with a one-time password: "
                f"{created.username} chooses their own at first sign-in, and can do nothing else until then"
            )
    except Refusal as exc:
        _fail(exc.message)
    click.echo(done)  # only once it is committed


@user.command("deactivate")
@click.argument("username")
@click.option("--reason", default="deactivated by an administrator", show_default=True)
def user_deactivate(username: str, reason: str) -> None:
    from mfg.identity import service as identity_service

    _url, engine = _engine()
    try:
        with session_scope(make_session_factory(engine)) as session:
            identity_service.deactivate_user(session, _actor(), username, reason)
    except Refusal as exc:
        _fail(exc.message)
    click.echo(f"account {username} deactivated (kept on record; the username is never reused)")


@cli.group(help="Sites: the manufacturing facility and clinical sites.")
def site() -> None:
    pass


@site.command("add")
@click.argument("code")
@click.option("--name", required=True)
@click.option("--kind", type=click.Choice(["clinical", "manufacturing"]), required=True)
@click.option("--address", required=True, help="Postal address as printed on labels (use \\n for new lines).")
@click.option("--facility-id", default=None, help="ISBT 128 facility id (manufacturing facility).")
def site_add(code: str, name: str, kind: str, address: str, facility_id: str | None) -> None:
    from mfg.study import service as study_service

    _url, engine = _engine()
    try:
        with session_scope(make_session_factory(engine)) as session:
            study_service.create_site(
                session,
                _actor(),
                code=code,
                name=name,
                kind=kind,
                address=address.replace("\\n", "\n"),
                isbt_facility_id=facility_id,
            )
    except Refusal as exc:
        _fail(exc.message)
    click.echo(f"site {code.upper()} added")


@cli.group(help="The audit trail.")
def audit() -> None:
    pass


SHOWN_PROBLEMS = 50


@audit.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain and every event's HMAC, hold the chain against every checkpoint, and compare
    every audited row with its trail. Reports every problem; exit 1 if there is any."""
    from mfg.audit import key as audit_key

    key = audit_key.load_key(audit_key.key_path())
    report_verification(mfg_config.database_url(), key)


def report_verification(url: str, key: bytes) -> None:
    """What `audit verify` (and `restore`, of what it restored) prints: the checkpoints held against, every
    problem and exit 1, or where the head stands against the last checkpoint and the event count."""
    from mfg.audit import key as audit_key
    from mfg.audit import service as audit_service

    checkpoint_file = audit_key.checkpoint_path()
    checkpoints, unreadable = audit_key.read_checkpoints(checkpoint_file)
    result = audit_service.verify_database(url, key=key, checkpoints=checkpoints)
    problems = [*unreadable, *result.problems]
    if result.legacy_events:
        click.echo(
            f"{result.legacy_events} events precede the audit key's introduction: "
            "they are covered by the SHA-256 chain, not by HMACs"
        )
    if checkpoint_file.exists():
        plural = "" if result.checkpoints == 1 else "s"
        click.echo(f"held against {result.checkpoints} checkpoint{plural} in {checkpoint_file}")
    else:
        click.echo(f"no checkpoint file at {checkpoint_file}: the chain's head is not anchored")
    if problems:
        click.echo(f"audit trail BROKEN: {len(problems)} problems")
        for problem in problems[:SHOWN_PROBLEMS]:
            click.echo(f"  {problem}")
        if len(problems) > SHOWN_PROBLEMS:
            click.echo(f"  … and {len(problems) - SHOWN_PROBLEMS} more")
        sys.exit(1)
    if checkpoints:
        # Intact, so the chain holds the last checkpoint's event, and its ids run from 1 without a gap.
        _line, last = checkpoints[-1]
        if result.events == last.event_id:
            click.echo(
                f"the chain's head, audit event {result.events}, matches the last checkpoint ({last.at})"
            )
        else:
            click.echo(
                f"the chain extends the last checkpoint (audit event {last.event_id}, {last.at}) "
                f"by {result.events - last.event_id} events"
            )
    click.echo(f"audit trail intact: {result.events} events")


@audit.command("checkpoint")
def audit_checkpoint() -> None:
    """Append the chain head (last event id, its hash, UTC time, their HMAC) to the checkpoint file."""
    from mfg import clock
    from mfg.audit import key as audit_key
    from mfg.audit import rules
    from mfg.audit import service as audit_service

    key = audit_key.load_key(audit_key.key_path())
    checkpoint_file = audit_key.checkpoint_path()
    checkpoints, unreadable = audit_key.read_checkpoints(checkpoint_file)
    for problem in unreadable:  # `mfg audit verify` reports them; anchoring the head still makes sense
        click.echo(f"warning: {problem}", err=True)
    _url, engine = _engine()
    session = make_session_factory(engine)()
    try:
        head = audit_service.chain_head(session)
        if head is None:
            click.echo("the audit trail is empty: nothing to anchor")
            return
        # A genuine head may follow forged events (it links to whatever it followed): every event that no
        # checkpoint covers yet is checked, links and HMACs, before the head vouches for them.
        anchors = [
            c for _line, c in checkpoints if c.hmac == rules.checkpoint_hmac(key, c.event_id, c.hash, c.at)
        ]
        last = anchors[-1] if anchors else None
        if last is not None and audit_service.event_hash_at(session, last.event_id) != last.hash:
            _fail(
                f"the chain no longer holds the last checkpoint's event {last.event_id} ({last.at}): "
                "run `mfg audit verify`"
            )
        report = rules.check_chain(
            audit_service.stored_events(session, after=last.event_id if last else 0),
            key,
            after=(last.event_id, last.hash) if last else None,
        )
        if report.problems:
            _event_id, first = min(report.problems, key=lambda p: (p[0] is None, p[0] or 0))
            _fail(f"{first}: nothing anchored; run `mfg audit verify`")
        checkpoint = rules.make_checkpoint(key, head.id, head.hash, clock.now())
    finally:
        session.close()
    audit_key.append_checkpoint(checkpoint_file, checkpoint)
    click.echo(f"checkpoint: audit event {checkpoint.event_id} at {checkpoint.at} -> {checkpoint_file}")


@cli.command(
    "backup",
    help="Back up the database to FILE, a new file (mode 0600): SQLite online backup, or pg_dump custom "
    "format for PostgreSQL. Prints the file's SHA-256 and the audit chain head it holds. The audit key and "
    "the checkpoint file are not in it: back them up separately.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The new file.")
def backup_command(out: Path) -> None:
    from mfg import backup

    report = backup.backup(mfg_config.database_url(), out)
    click.echo(f"backup written: {out} ({report.kind}, {report.size} bytes, mode 0600)")
    click.echo(f"sha256 {report.sha256}")
    if report.head is None:
        click.echo("chain head: none (the audit trail is empty)")
    else:
        click.echo(f"chain head: audit event {report.head.event_id} hash {report.head.hash}")


@cli.command(
    "restore",
    help="Restore FILE (made by `mfg backup`) into an empty database (MFG_ADMIN_DATABASE_URL if set, else "
    "MFG_DATABASE_URL), upgrade it to the latest migration, and verify it as `mfg audit verify` does, "
    "against the audit key and the checkpoint file: exit 1 if its chain does not hold.",
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def restore_command(file: Path) -> None:
    from alembic.util import CommandError

    from mfg import backup
    from mfg.audit import key as audit_key

    # Before anything is written: a restore that cannot be verified is not worth starting.
    key = audit_key.load_key(audit_key.key_path())
    url = mfg_config.owner_database_url()
    digest = backup.restore(file, url)
    engine = make_engine(url)
    click.echo(f"restored {file} (sha256 {digest}) into {engine.url.render_as_string(hide_password=True)}")
    if not database_is_current(engine, url):
        try:
            upgrade_database(url)
        except CommandError as exc:
            _fail(f"cannot upgrade the restored database to this release's migrations: {exc}")
        click.echo("upgraded to the latest migration (the backup was made by an earlier release)")
    _grant_application_role(mfg_config.database_url(), url, engine, click.echo)
    engine.dispose()
    report_verification(url, key)
