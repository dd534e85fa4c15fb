"""The benchmark's account of where CPU goes: py-spy samples by package, processes by part."""

from pathlib import Path

import pytest

from benchmarks.profiles import _part, summarize


def test_samples_count_for_the_innermost_frame_of_a_known_package(tmp_path: Path) -> None:
    raw = tmp_path / "x.raw"
    raw.write_text(
        "run (uvicorn/main.py:1);handle (fastapi/routing.py:2);"
        "execute (asyncpg/connection.py:3) 6\n"
        "run (uvicorn/main.py:1);handle (fastapi/routing.py:2) 3\n"
        "<module> (<string>:1) 1\n"
    )
    profile = summarize("x", raw)
    assert profile.samples == 10
    shares = dict(profile.shares)
    assert shares["asyncpg (driver, incl. its C protocol)"] == pytest.approx(60)
    assert shares["fastapi (routing, dependencies)"] == pytest.approx(30)
    assert shares["other"] == pytest.approx(10)
    assert profile.frames[0] == ("execute (asyncpg/connection.py:3)", pytest.approx(60))
    assert "asyncpg (driver, incl. its C protocol) 60%" in profile.summary()


def test_a_missing_file_is_an_empty_profile(tmp_path: Path) -> None:
    profile = summarize("gone", tmp_path / "gone.raw")
    assert profile.samples == 0
    assert profile.summary() == "profile gone: no samples"


@pytest.mark.parametrize(
    ("cmdline", "part"),
    [
        ("/v/bin/python /v/bin/command-service serve", "command-service"),
        ("/v/bin/python /v/bin/command-service relay", "relay"),
        ("/v/bin/python /v/bin/projector run", "projector"),
        ("postgres: catalog catalog 127.0.0.1(5000) idle", "postgres: write model"),
        ("postgres: catalog ferretdb 127.0.0.1(5001) idle", "postgres: FerretDB's store"),
        ("postgres: checkpointer ", "postgres: background"),
        # FerretDB's own command line names its PostgreSQL URL; it is not a backend.
        ("/c/ferretdb -listen-addr 127.0.0.1:1 -postgresql-url postgres://x/ferretdb", "ferretdb"),
        ("java -cp libs/* kafka.Kafka server.properties", "kafka"),
        ("/usr/bin/vim notes.txt", None),
    ],
)
def test_processes_are_told_apart_by_their_command_lines(cmdline: str, part: str | None) -> None:
    assert _part(cmdline) == part
