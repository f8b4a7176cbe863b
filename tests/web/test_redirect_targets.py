"""Issue 8 item 7: a redirect target (``next``, the Referer) with a control character split the Location
header (a 500), and a megabyte of ``next`` was copied into it. Only short, printable, same-site targets are
followed; anything else goes to the page's fallback."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.bench_data import Bench
from tests.conftest import World, login


def _client(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


@pytest.mark.parametrize(
    "target",
    [
        "/bench/\r\nSet-Cookie: stolen=1",
        "/bench/\nX: y",
        "/bench/\tx",
        "/bench/\x7f",
        "/" + "a" * 100_000,
        "/bench/?q=" + "b" * 1_000_000,
    ],
    ids=["crlf", "lf", "tab", "del", "100KB", "1MB"],
)
def test_a_redirect_target_with_control_characters_or_huge_falls_back(
    app: Flask, world: World, bench: Bench, target: str
) -> None:
    client = _client(app, "technician")
    chosen = client.post("/bench/workstation", data={"code": "BSC-01", "next": target})
    assert chosen.status_code == 302 and chosen.headers["Location"] == "/bench/"
    if "\n" not in target:  # a header cannot carry a line break: only a form field can
        referer = {"Referer": "http://localhost" + target}
        refused = client.get("/scan?code=nothing-like-a-code", headers=referer)
        assert refused.status_code == 302 and refused.headers["Location"] == "/"


def test_a_short_same_site_target_is_still_followed(app: Flask, world: World, bench: Bench) -> None:
    client = _client(app, "technician")
    target = "/bench/?step=" + "x" * 400
    chosen = client.post("/bench/workstation", data={"code": "BSC-01", "next": target})
    assert chosen.status_code == 302 and chosen.headers["Location"] == target
