"""`threadline serve`: starts on the embedded default, signs staff in safely, tunes its process."""

from __future__ import annotations

import base64
import re
import secrets
import stat
from pathlib import Path

import pytest

from tests.conftest import NORTHWIND
from tests.serving import environment, refused, serving
from threadline.business import load
from threadline.cli import COLLECTOR_THRESHOLDS
from threadline.security import RevocationList, TokenVerifier
from threadline.security.sign_in import SHOWN_MARKER, sign_in_people
from threadline.settings import Settings

JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'serve.db'}"


async def test_serve_prints_its_urls_and_answers(tmp_path) -> None:
    env = environment(THREADLINE_STORE=store_url(tmp_path))
    async with serving(env) as served:
        pass
    assert f"customer chat   {served.http}/chat" in served.output
    assert f"agent desk      {served.http}/desk\n" in served.output
    assert "?token=" not in served.output
    assert served.returncode in (0, 130)  # a clean stop on Ctrl-C


async def test_development_prints_sign_in_links_on_the_first_start_only(tmp_path) -> None:
    env = environment(THREADLINE_STORE=store_url(tmp_path), THREADLINE_BOT_PROCESS="false")
    async with serving(env) as first:
        pass
    async with serving(env) as second:
        pass

    links = dict(re.findall(r"^ {4}(\S+) +(http://\S+)$", first.output, re.MULTILINE))
    people = sign_in_people(load(NORTHWIND))
    assert sorted(links) == sorted(person.subject for person in people)
    assert "DEVELOPMENT ONLY" in first.output
    verifier = TokenVerifier.from_settings(Settings(store=store_url(tmp_path)), RevocationList())
    for person in people:
        page, token = links[person.subject].removeprefix(first.http).split("#token=")
        assert page == person.page  # the token rides in the fragment, never the query
        principal = verifier.verify(token)
        assert (principal.subject, principal.kind) == (person.subject, person.kind)
    marker = tmp_path / "data" / SHOWN_MARKER
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600

    assert JWT.search(second.output) is None
    assert "sign-in links (development): `threadline token links` prints them" in second.output


async def test_production_serves_without_printing_a_token(tmp_path) -> None:
    env = environment(
        THREADLINE_STORE=store_url(tmp_path),
        THREADLINE_ENV="production",
        THREADLINE_TOKEN_SECRET=secrets.token_urlsafe(32),
        THREADLINE_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        THREADLINE_BOT_PROCESS="false",
    )
    async with serving(env) as served:
        pass
    assert JWT.search(served.output) is None
    assert "#token=" not in served.output
    assert "`threadline token create` or the identity provider" in served.output
    assert not (tmp_path / "data" / "token-secret").exists()  # none generated


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "THREADLINE_ENV=production needs THREADLINE_TOKEN_SECRET or"),
        ("a" * 32, "THREADLINE_TOKEN_SECRET is too predictable"),
        ("correcthorse" * 3, "THREADLINE_TOKEN_SECRET is too predictable"),
    ],
)
async def test_production_refuses_a_missing_or_weak_secret(tmp_path, secret, message) -> None:
    env = environment(THREADLINE_STORE=store_url(tmp_path), THREADLINE_ENV="production")
    if secret is not None:
        env["THREADLINE_TOKEN_SECRET"] = secret
    code, out, err = await refused(env)
    assert code == 1 and out == ""
    assert err.startswith(f"threadline: error: {message}") and err.count("\n") == 1
    assert secret is None or secret not in err
    assert not (tmp_path / "data" / "token-secret").exists()


async def test_a_weak_secret_is_refused_in_development_too(tmp_path) -> None:
    env = environment(THREADLINE_STORE=store_url(tmp_path), THREADLINE_TOKEN_SECRET="ab" * 16)
    code, out, err = await refused(env)
    assert code == 1 and out == ""
    assert err.startswith("threadline: error: THREADLINE_TOKEN_SECRET is too predictable")


# What the served process reports about its collector once it answers on its port.
GC_PROBE = """
import gc, os, signal, socket, sys, threading, time

def report():
    port = int(sys.argv[sys.argv.index("--port") + 1])
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    settled = time.monotonic() + 5  # start-up ends just after the port opens
    while not gc.get_freeze_count() and time.monotonic() < settled:
        time.sleep(0.05)
    print("collector", gc.get_threshold(), gc.get_freeze_count(), flush=True)

threading.Thread(target=report, daemon=True).start()
from threadline.cli import main
sys.exit(main(sys.argv[1:]))
"""


async def test_the_served_process_collects_less_often_and_froze_its_start_up(tmp_path) -> None:
    env = environment(THREADLINE_STORE=store_url(tmp_path), THREADLINE_BOT_PROCESS="false")
    async with serving(env, python=("-c", GC_PROBE)) as served:
        pass
    found = re.search(r"^collector \((\d+), (\d+), (\d+)\) (\d+)$", served.output, re.MULTILINE)
    assert found is not None, served.output
    assert tuple(int(n) for n in found.groups()[:3]) == COLLECTOR_THRESHOLDS
    assert int(found.group(4)) > 10_000  # start-up's objects, frozen
