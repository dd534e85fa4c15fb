"""Deployment artefacts checked offline: Dockerfiles, the compose file, the Kubernetes overlays.

No container engine or cluster is needed. The pinned tools and third-party schemas are fetched
from package registries on the first run and cached outside the repository (toolchain.py).
"""
