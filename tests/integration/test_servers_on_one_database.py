"""Three server processes on one database (issue 8, item 9): concurrent logins, failed logins on shared
accounts, the same critical step recorded from two terminals and verified from two others, over real HTTP with
CSRF. Afterwards `mfg audit verify` passes, failed logins are counted exactly, and there is one signature per
verification. Runs on SQLite (one file, WAL) and, with MFG_TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mfg import clock
from mfg.identity.models import Signature, User
from mfg.process import batches, workstations
from mfg.process.models import StepRecord
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import Bench, step_values
from tests.conftest import PASSWORD, ROOT, World, all_at_once, make_user, run_cli
from tests.integration.test_batch_service import run_step

SERVERS = 3
FAILURES_PER_CLIENT = 5
CLIENTS_PER_SERVER = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def servers(app_role_url: str, tmp_path: Path, world: World) -> Iterator[list[str]]:
    # On PostgreSQL the servers connect as production does: a role with rows only, no DDL.
    env = {
        **os.environ,
        "MFG_DATABASE_URL": app_role_url,
        "MFG_INSTANCE_PATH": str(tmp_path),
        "MFG_SECRET_KEY": "one-key-for-all-servers",
        "MFG_LOCKOUT_THRESHOLD": "100",
    }
    ports = [_free_port() for _ in range(SERVERS)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "mfg", "serve", "--port", str(port), "--threads", "4"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for base, process in zip(bases, processes, strict=True):
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{base}/api/health", timeout=2).read()
                    break
                except (urllib.error.URLError, ConnectionError):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"server did not start: {process.stderr.read()!r}") from None  # type: ignore[union-attr]
                    time.sleep(0.2)
        yield bases
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


class Terminal:
    """A browser's worth of HTTP: cookies, CSRF tokens from the pages, no redirects followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any) -> None:
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())

    def _open(self, request: urllib.request.Request) -> tuple[int, str]:
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def get(self, path: str) -> tuple[int, str]:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, data: dict[str, str], token_from: str) -> tuple[int, str]:
        _status, page = self.get(token_from)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None, page[:300]
        body = urllib.parse.urlencode({**data, "csrf_token": token.group(1)}).encode()
        return self._open(urllib.request.Request(self.base + path, data=body, method="POST"))

    def login(self, username: str, password: str) -> int:
        return self.post("/login", {"username": username, "password": password}, "/login")[0]


def test_three_servers_on_one_database(
    servers: list[str],
    database_url: str,
    tmp_path: Path,
    session: Session,
    session_factory: sessionmaker[Session],
    world: World,
    study: StudyDefinition,
    subject: Subject,
    bench: Bench,
) -> None:
    make_user(session, "technician", "technician2")
    make_user(session, "supervisor", "supervisor2")
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    for step_key in ("collection.harvest", "collection.handoff"):
        run_step(session, world, study, batch, bench, step_key)
    workstations.open_at_workstation(session, world.users["technician"], bench.cabinet, batch)
    session.commit()
    values = step_values(session, batch, "receipt.accept", clock.now())
    batch_id = batch.id
    session.rollback()

    # Failed logins on one shared account, from every server at once; good logins racing them.
    def wrong_passwords(base: str) -> Callable[[], list[int]]:
        terminal = Terminal(base)
        return lambda: [terminal.login("nurse", "wrong-password") for _ in range(FAILURES_PER_CLIENT)]

    def good_logins(base: str) -> Callable[[], list[int]]:
        return lambda: [Terminal(base).login("pharmacist", PASSWORD) for _ in range(3)]

    work = [wrong_passwords(b) for b in servers for _ in range(CLIENTS_PER_SERVER)]
    work += [good_logins(b) for b in servers]
    results = all_at_once(work)
    failed = [code for batch_codes in results[: len(servers) * CLIENTS_PER_SERVER] for code in batch_codes]
    assert set(failed) == {401}
    assert {
        code for batch_codes in results[len(failed) // FAILURES_PER_CLIENT :] for code in batch_codes
    } == {302}

    # The same critical step from two terminals on two servers: one is recorded, the other refused by name.
    recorders = []
    for base, username in zip(servers[:2], ("technician", "technician2"), strict=True):
        terminal = Terminal(base)
        assert terminal.login(username, PASSWORD) == 302
        terminal.post("/bench/workstation", {"code": "BSC-01"}, "/bench/")
        recorders.append(terminal)
    form = {**{f"f.{k}": v for k, v in values.items()}, "password": PASSWORD}
    page = f"/bench/batches/{batch_id}"
    recorded = all_at_once(
        [lambda t=t: t.post(f"{page}/steps/receipt.accept", form, page) for t in recorders]
    )
    assert sorted(code for code, _ in recorded) == [302, 422], [
        page[:2000] for code, page in recorded if code != 302
    ]
    refusal = next(text for code, text in recorded if code == 422)
    assert re.search(r"already recorded|waiting for second-person verification", refusal), re.findall(
        r'class="(?:refusal|flash flash-error)"[^>]*>([^<]*)', refusal
    )

    # Two verifiers on two other servers at once: one signature.
    with session_factory() as s:
        record = s.scalar(select(StepRecord).where(StepRecord.step_key == "receipt.accept"))
        assert record is not None and record.status == "awaiting_verification"
        record_id, performer = record.id, record.performed_by_id
    verifiers = []
    for base, username in zip(servers[1:], ("supervisor", "supervisor2"), strict=True):
        terminal = Terminal(base)
        assert terminal.login(username, PASSWORD) == 302
        verifiers.append((terminal, username))
    verified = all_at_once(
        [
            lambda t=t, u=u: t.post(
                f"/bench/records/{record_id}/verify", {"username": u, "password": PASSWORD}, page
            )[0]
            for t, u in verifiers
        ]
    )
    assert sorted(verified) == [302, 422]

    with session_factory() as s:
        nurse = s.scalar(select(User).where(User.username == "nurse"))
        assert nurse is not None and nurse.failed_logins == SERVERS * CLIENTS_PER_SERVER * FAILURES_PER_CLIENT
        signatures = s.scalars(
            select(Signature).where(
                Signature.entity_type == "step_record", Signature.entity_id == str(record_id)
            )
        ).all()
        assert sorted(sig.meaning for sig in signatures) == ["performed", "verified"]
        assert performer in {sig.signer_id for sig in signatures}
    checked = run_cli(database_url, "audit", "verify", tmp_path=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "intact" in checked.stdout
