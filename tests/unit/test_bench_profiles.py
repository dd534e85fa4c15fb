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


WRITE_MODEL = "/usr/lib/postgresql/17/bin/postgres -D /r/postgres/data -p 25432"
STORE = "/usr/lib/postgresql/15/bin/postgres -D /r/mongo-store/data -p 25434 -c x=y"
STORE_PART = "postgres: DocumentDB's store"


@pytest.mark.parametrize(
    ("cmdline", "parent", "part"),
    [
        ("/v/bin/python /v/bin/command-service serve", "", "command-service"),
        ("/v/bin/python /v/bin/command-service relay", "", "relay"),
        ("/v/bin/python /v/bin/projector run", "", "projector"),
        ("postgres: catalog catalog 127.0.0.1(5000) idle", WRITE_MODEL, "postgres: write model"),
        ("postgres: checkpointer ", WRITE_MODEL, "postgres: background"),
        # DocumentDB's cluster: the gateway's sessions as the store's users, its system user,
        # and its background workers are told apart by their postmaster.
        ("postgres: catalog_projector postgres [local] idle", STORE, STORE_PART),
        ("postgres: catalog postgres [local] idle", STORE, STORE_PART),
        ("postgres: pg_cron launcher ", STORE, STORE_PART),
        # The gateway's command line names its configuration; the store's postmaster is no
        # backend (nor is the write model's).
        (
            "/c/documentdb/k/gateway/documentdb_gateway /r/documentdb/gateway.json",
            "/usr/bin/supervisord -c /r/supervisord.conf",
            "documentdb gateway",
        ),
        (STORE, "/usr/bin/supervisord -c /r/supervisord.conf", None),
        ("java -cp libs/* kafka.Kafka server.properties", "", "kafka"),
        ("/usr/bin/vim notes.txt", "", None),
    ],
)
def test_processes_are_told_apart_by_their_command_lines(
    cmdline: str, parent: str, part: str | None
) -> None:
    assert _part(cmdline, parent) == part
