"""Without the ``voice`` extra the service starts, says voice is off, and the voice endpoints
answer 503 with the install hint."""

from __future__ import annotations

import os
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import httpx
import websockets
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.serving import environment, serving
from threadline.channels.chat.client import ChatClient
from threadline.channels.voice import INSTALL_HINT, missing

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install, with everything they require in turn."""
    found: set[str] = set()
    todo = [Requirement(text) for text in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found.add(name)
        extras = requirement.extras or {""}
        for text in metadata.requires(requirement.name) or []:
            needed = Requirement(text)
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in extras):
                todo.append(needed)
    return found


def voice_only_modules() -> list[str]:
    """Every top-level module that only the ``voice`` extra brings in."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    only = _closure(project["optional-dependencies"]["voice"]) - _closure(project["dependencies"])
    return sorted(
        module
        for module, distributions in metadata.packages_distributions().items()
        if {canonicalize_name(d) for d in distributions} <= only
    )


def without_the_extra(folder: Path) -> dict[str, str]:
    """An environment whose Python processes cannot import what the extra brings in."""
    blocked = voice_only_modules()
    assert {"faster_whisper", "ctranslate2", "webrtcvad", "twilio"} <= set(blocked)
    (folder / "sitecustomize.py").write_text(
        f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n", encoding="utf-8"
    )
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return environment(
        PYTHONPATH=path, THREADLINE_STORE=f"sqlite:///{folder / 'var' / 'threadline.db'}"
    )


def test_voice_is_on_with_the_extra_installed() -> None:
    assert missing() is None


async def test_without_the_extra_the_service_runs_and_voice_answers_503(tmp_path) -> None:
    env = without_the_extra(tmp_path)
    async with serving(env) as served, httpx.AsyncClient(base_url=served.http) as http:
        assert (await http.get("/openapi.json")).status_code == 200
        response = await http.post("/voice/twilio/incoming", data={"CallSid": "CA1"})
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == INSTALL_HINT
        assert response.json()["type"] == "urn:threadline:problem:voice-off"

        ws = served.http.replace("http", "ws", 1)
        async with websockets.connect(f"{ws}/voice/twilio/stream") as stream:
            await stream.wait_closed()
        assert (stream.close_code, stream.close_reason) == (1011, INSTALL_HINT)

        # The rest of the service, and the bot worker beside it, run as before.
        token = (await http.post("/chat/session")).json()["token"]
        async with ChatClient.connect(f"{ws}/chat/ws", token=token) as chat:
            await chat.say("where is my order 1042?")
            reply = await chat.wait_for(lambda e: e["event"] == "message.sent", timeout=20)
            assert reply["actor"] == "bot"
    assert f"  {INSTALL_HINT}\n" in served.output
    assert served.output.count(INSTALL_HINT) == 1
    assert "Traceback" not in served.output


def test_the_blocked_modules_really_cannot_be_imported(tmp_path) -> None:
    import subprocess

    env = without_the_extra(tmp_path)
    code = "import importlib.util as u; print(u.find_spec('faster_whisper')); import twilio"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "None"
    assert "ModuleNotFoundError: import of twilio halted" in out.stderr
