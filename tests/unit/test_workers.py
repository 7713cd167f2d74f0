"""`--workers N` settings and sockets: refused where it cannot work, one port for every front-end."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from server.cli import main
from server.config import Settings
from server.workers import bind_http


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        ({"ray": True}, "--ray"),
        ({"backend": "remote", "remote_url": ["http://127.0.0.1:9/x"]}, "--backend remote"),
    ],
)
def test_workers_refuse_what_serves_no_local_model(flags: dict[str, object], refused: str) -> None:
    with pytest.raises(ValidationError, match=f"cannot be combined with {refused}"):
        Settings(workers=2, **flags)
    Settings(workers=1, **flags)  # one process: as before


def test_the_cli_refuses_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--workers", "2", "--ray"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--workers 2 runs local models only" in err


def test_every_front_end_listens_on_the_one_port() -> None:
    listeners = bind_http("127.0.0.1", 0, 3)
    try:
        ports = {s.getsockname()[1] for s in listeners}
        assert len(listeners) == (3 if hasattr(socket, "SO_REUSEPORT") else 1) and len(ports) == 1
        with socket.create_connection(("127.0.0.1", ports.pop()), timeout=5):
            pass  # accepted into one listener's backlog before any process serves
    finally:
        for s in listeners:
            s.close()
