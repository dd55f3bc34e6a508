"""Every check of the project, one entry point: `nox` (what `.ci/run` runs, in the same order
of importance: lint, typecheck, docs, tests, and the wheel check when `.ci/check-wheels`
exists)."""

from __future__ import annotations

from pathlib import Path

import nox

CHECK_WHEELS = Path(__file__).parent / ".ci" / "check-wheels"

nox.options.sessions = ["lint", "typecheck", "docs", "tests"] + (
    ["wheels"] if CHECK_WHEELS.exists() else []
)
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite on asyncio and trio, with branch coverage."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", "idphoto_async", "tests", "benchmarks", "docs")
    session.run("ruff", "format", "--check", "idphoto_async", "tests", "benchmarks", "docs")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "idphoto_async")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation with --strict."""
    session.install("-e", ".[dev,docs]")
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def wheels(session: nox.Session) -> None:
    """Every install resolves to binary wheels on CPython 3.11-3.14 (`.ci/check-wheels`)."""
    if not CHECK_WHEELS.exists():
        session.skip(".ci/check-wheels does not exist")
    session.run("bash", str(CHECK_WHEELS), *session.posargs, external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the local server; writes benchmarks/RESULTS.md."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "benchmarks", *session.posargs)
