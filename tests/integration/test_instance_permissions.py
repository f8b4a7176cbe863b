"""Issue 8 item 7: the SQLite file was created world-readable. The instance folder (database, session key) is
created 0700 and the SQLite file 0600, by the app and by ``mfg init`` alike."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from mfg import create_app
from tests.conftest import ROOT


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_instance_folder_and_the_sqlite_file_are_private(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    app = create_app({"INSTANCE_PATH": str(instance), "SECRET_KEY": "x"})
    with app.extensions["mfg.engine"].connect():
        pass
    app.extensions["mfg.engine"].dispose()
    assert _mode(instance) == 0o700
    assert _mode(instance / "mfg.sqlite3") == 0o600


def test_mfg_init_makes_a_private_sqlite_file(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    env = {k: v for k, v in os.environ.items() if k != "MFG_DATABASE_URL"}
    env["MFG_INSTANCE_PATH"] = str(instance)
    done = subprocess.run(
        [sys.executable, "-m", "mfg", "init"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert _mode(instance) == 0o700
    files = [p for p in instance.iterdir() if p.name.startswith("mfg.sqlite3")]
    assert files and all(_mode(p) == 0o600 for p in files), {p.name: oct(_mode(p)) for p in files}
