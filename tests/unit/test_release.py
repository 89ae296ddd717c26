"""Release files: license, version in one place, changelog and tags, the image's pins.

CHANGELOG.md's header is the convention these check: the version lives in
streamer/__init__.py; each release has a ``## [X.Y.Z] - YYYY-MM-DD`` section and an
annotated tag ``vX.Y.Z``; the image installs the versions pinned in
deploy/docker/constraints.txt.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import streamer

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CHANGELOG = (ROOT / "CHANGELOG.md").read_text()
CONSTRAINTS = ROOT / "deploy" / "docker" / "constraints.txt"


def test_license_is_apache_2_and_declared_as_spdx() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert metadata.metadata("streamer")["License-Expression"] == "Apache-2.0"


def test_the_version_lives_in_one_place() -> None:
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "streamer.__version__"}
    Version(streamer.__version__)  # a valid version
    assert metadata.version("streamer") == streamer.__version__
    kustomization = yaml.safe_load((ROOT / "deploy" / "k8s" / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert image["newTag"] == streamer.__version__


def test_changelog_keeps_a_changelog_with_every_release() -> None:
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", CHANGELOG, re.M)
    assert headings[0] == ("Unreleased", "")
    releases = [version for version, _ in headings[1:]]
    assert all(date for _, date in headings[1:]), "every release has a date"
    assert releases == sorted(releases, key=Version, reverse=True), "newest first"
    assert releases[-1] == "0.1.0"
    # the current version is released, or is the next one (then Unreleased holds it)
    assert Version(streamer.__version__) >= Version(releases[0])
    for version, _ in headings:  # every heading has its link reference
        assert re.search(rf"^\[{re.escape(version)}\]: https?://", CHANGELOG, re.M), version
    for section in re.split(r"^## ", CHANGELOG, flags=re.M)[1:]:
        assert "State layout" in section.split("###")[0], section.splitlines()[0]
        for kind in re.findall(r"^### (.+)$", section, re.M):
            assert kind in ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")


def test_version_tags_follow_the_convention() -> None:
    tags = subprocess.run(["git", "tag", "--list", "v*"], capture_output=True, text=True,
                          cwd=ROOT, check=False).stdout.split()
    released = set(re.findall(r"^## \[(\d[^\]]*)\]", CHANGELOG, re.M))
    for tag in tags:
        assert re.fullmatch(r"v\d+\.\d+\.\d+(-rc\.\d+)?", tag), tag
        assert tag[1:].split("-")[0] in released, f"{tag} has no CHANGELOG section"
    at_head = subprocess.run(["git", "tag", "--points-at", "HEAD", "--list", "v*"],
                             capture_output=True, text=True, cwd=ROOT, check=False).stdout.split()
    for tag in at_head:
        assert tag.split("-")[0] == f"v{streamer.__version__}", tag


def test_image_constraints_pin_every_runtime_dependency_within_its_range() -> None:
    pins: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        assert version, f"not a pin: {line!r}"
        pins[canonicalize_name(name)] = Version(version)
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned in {CONSTRAINTS.name}"
        assert requirement.specifier.contains(pins[name]), (name, str(pins[name]), spec)
    test_only = {canonicalize_name(Requirement(s).name)
                 for s in PYPROJECT["project"]["optional-dependencies"]["test"]}
    assert not test_only & pins.keys(), "test tools do not belong in the image"


def test_dockerfile_installs_with_the_constraints_and_make_image_builds_it() -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    assert "COPY deploy/docker/constraints.txt ./constraints.txt" in dockerfile
    assert "pip install --constraint constraints.txt ." in dockerfile
    assert "ARG STREAMER_BUILD_COMMIT" in dockerfile
    ignore = (ROOT / "deploy" / "docker" / "Dockerfile.dockerignore").read_text().split()
    for needed in ("!LICENSE", "!deploy/docker/constraints.txt", "!pyproject.toml",
                   "!streamer/"):
        assert needed in ignore, needed
    plan = subprocess.run(["make", "-n", "image", "DOCKER=true"], capture_output=True,
                          text=True, cwd=ROOT, check=True).stdout
    assert "build -f deploy/docker/Dockerfile" in plan
    assert f"-t streamer:{streamer.__version__} ." in plan
    assert "STREAMER_BUILD_COMMIT=" in plan
