"""A small reader of the repository's Dockerfiles: stages and their instructions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.manifests import REPO

DOCKER_DIR = REPO / "deploy" / "docker"
# One image per workspace member that runs as a process (the relay shares command-service's).
SERVICE_IMAGES = ("command-service", "projector", "query-service")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse(path: Path) -> Dockerfile:
    """Instructions of a Dockerfile (continuations joined, comments dropped), by stage."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        arguments = re.sub(r"\s+", " ", arguments.strip())
        if keyword == "ARG" and not stages and "=" in arguments:
            key, value = arguments.split("=", 1)
            args[key] = value
        elif keyword == "FROM":
            parts = arguments.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return Dockerfile(path, args, stages)
