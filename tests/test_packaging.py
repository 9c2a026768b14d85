"""The package's metadata: one version everywhere, an SPDX license, honest dependency floors."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

import batchml
from tests.support.cli import REPO, run_batchml

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def test_version_is_written_once_and_is_what_the_installed_distribution_says() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "batchml.__version__"
    assert batchml.__version__ == metadata.version("batchml")
    Version(batchml.__version__)  # a PEP 440 version


def test_version_flag_and_python_dash_m_print_the_installed_version() -> None:
    """``python -m batchml --version`` (a real process) prints the distribution's version."""
    result = run_batchml("--version")
    assert result.code == 0, result.err
    assert result.out.strip() == f"batchml {metadata.version('batchml')}"


def test_importing_the_main_module_runs_no_command() -> None:
    """``batchml/__main__.py`` runs the CLI only as ``python -m batchml``: importing it (a
    tool that scans modules) neither parses sys.argv nor exits."""
    done = subprocess.run(
        [sys.executable, "-c", "import batchml.__main__; print('imported')", "--version"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout == "imported\n", done.stdout + done.stderr


def test_make_version_prints_the_package_version() -> None:
    """The image tag in the docs is ``$(make -s version)``."""
    done = subprocess.run(
        ["make", "-s", "version"], capture_output=True, text=True, timeout=30, check=False,
        cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout == batchml.__version__ + "\n", done.stderr


def test_the_image_tag_is_the_package_version_and_no_doc_writes_it_by_hand() -> None:
    base = yaml.safe_load((REPO / "deploy" / "k8s" / "base" / "kustomization.yaml").read_text())
    tags = {i["name"]: i["newTag"] for i in base["images"]}
    assert tags["batchml"] == batchml.__version__
    literal = re.compile(r"-t \S*batchml\S*:\d|-t \$IMAGE:\d|docker push \S+:\d")
    for doc in ("README.md", "deploy/README.md", "deploy/Dockerfile"):
        for line in (REPO / doc).read_text().splitlines():
            assert not literal.search(line), f"{doc}: {line.strip()} (use $(make -s version))"


def test_license_is_an_spdx_expression_with_its_text_in_the_repository() -> None:
    """PEP 639: a string license (a table makes setuptools warn at every install), the file
    shipped, no License classifier beside it (setuptools refuses both), a backend that reads
    it."""
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]
    (backend,) = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    assert backend.name == "setuptools"
    floor = min(Version(s.version) for s in backend.specifier if s.operator == ">=")
    assert floor >= Version("77"), "setuptools reads the SPDX license string from 77 on"
    assert metadata.metadata("batchml")["License-Expression"] == "Apache-2.0"


def test_metadata_links_nowhere_outside_the_repository() -> None:
    assert "urls" not in PROJECT
    for key in ("description", "classifiers"):
        assert "://" not in str(PROJECT[key])


def _floors() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / ".ci" / "constraints-floor.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{line}: a floor is pinned with =="
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_every_runtime_dependency_has_a_floor_and_the_ci_pins_exactly_it() -> None:
    """pyproject.toml's ``>=`` floors and .ci/constraints-floor.txt (what `make test-floors`
    installs) name the same versions: raising one without the other fails here."""
    pins = _floors()
    direct = [Requirement(r) for r in PROJECT["dependencies"]]
    assert {canonicalize_name(r.name) for r in direct} == set(pins)
    for req in direct:
        lower = [s for s in req.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{req}: give it one >= floor"
        assert Version(lower[0].version) == Version(pins[canonicalize_name(req.name)]), req
        assert req.specifier.contains(pins[canonicalize_name(req.name)])


@pytest.mark.parametrize(
    ("name", "broken"),
    [
        ("pandas", "2.2.3"),  # pickles StringDtype by NEWOBJ, which the safe unpickler refuses
        ("scipy", "1.11.0"),  # yanked
        ("typer", "0.15.3"),  # `X | None` options (0.12.0), Click 8.2+ (to 0.15.3)
    ],
)
def test_floors_exclude_the_releases_found_broken(name: str, broken: str) -> None:
    """Found by `make test-floors`; redis 5.0-5.2 work since ScriptCaller passes them a
    command name."""
    spec = next(Requirement(r) for r in PROJECT["dependencies"] if Requirement(r).name == name)
    assert not spec.specifier.contains(broken), spec


def test_no_type_stub_package_the_libraries_replace() -> None:
    """types-redis predates redis-py's own annotations (redis 5 ships py.typed); its stubs
    disagree with them."""
    dev = [canonicalize_name(Requirement(r).name) for r in PROJECT["optional-dependencies"]["dev"]]
    assert "types-redis" not in dev
    assert SpecifierSet(">=5").contains(metadata.version("redis"))


def test_ci_runs_the_floor_tests_and_a_local_make_test_does_not() -> None:
    """`make test` with CI=true (what .ci/run sets) ends with the floors venv's pytest."""

    def dry_run(ci: str) -> str:
        done = subprocess.run(
            ["make", "-n", "test", f"CI={ci}"], capture_output=True, text=True, timeout=60,
            check=False, cwd=REPO,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert ".venv-floors/bin/pytest" in dry_run("true")
    assert ".venv-floors" not in dry_run("false")
    assert 'export CI="${CI:-true}"' in (REPO / ".ci" / "run").read_text()
