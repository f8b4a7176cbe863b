"""MFG: manufacturing execution system for autologous cell therapy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from mfg import config
from mfg.db import make_engine, make_session_factory

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Application factory: configuration from the environment, overridden by ``test_config``."""
    settings = config.from_environment(test_config)
    app = Flask(
        __name__,
        instance_path=settings["INSTANCE_PATH"],
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder="static",
    )
    app.config.update(settings)
    from mfg import capabilities, clock
    from mfg.audit import key as audit_key
    from mfg.identity import service as identity_service
    from mfg.study.definition import load_study

    capabilities.install()
    # Every event the app writes is keyed: no key, no app (`mfg init` makes it).
    audit_key.use_key(audit_key.load_key(Path(app.config["AUDIT_KEY_FILE"])))

    clock.use_facility_zone(load_study(app.config["STUDY"]).facility.time_zone)
    # Readers begin deferred; a writing request declares itself first (mfg.web.transaction.begin_writing).
    engine = make_engine(app.config["DATABASE_URL"], begin="declared")
    app.extensions["mfg.engine"] = engine
    sessions = make_session_factory(engine)
    identity_service.configure_sessions(sessions, lockout_threshold=app.config["LOCKOUT_THRESHOLD"])
    app.extensions["mfg.sessions"] = sessions

    from mfg.web import init_web

    init_web(app)
    return app
