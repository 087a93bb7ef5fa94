"""Sessions: tests, lint (ruff), typecheck (mypy), bench (benchmarks/, figures in RESULTS.md)."""

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"

RUFF = "ruff==0.17.6"


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests against the installed package (not the source tree)."""
    session.install(".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install(RUFF)
    session.run("ruff", "check", "expdeploy", "plugins", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install(".[typecheck]")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks side by side with peer tools; prints a Markdown table for RESULTS.md."""
    session.install(".")
    session.run("python", "benchmarks/run.py", *session.posargs)
