"""Which untracked files count as secrets (never copied into an experiment), and the dirty summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from expdeploy.provenance import SECRET_NAMES, CodeState


@pytest.mark.parametrize("name", [".env", "conf/.env.local", ".netrc", "keys/id_ed25519", "id_rsa.pub",
                                  "tls/server.key", "ca.pem", "secrets.yaml", "credentials.json",
                                  "client_secret_1234.apps.json"])
def test_secret_names_are_never_kept(name: str) -> None:
    assert SECRET_NAMES.search(name)


@pytest.mark.parametrize("name", ["config.py", "secret_sauce.py", "x/crypto_secretbox.py", ".envrc",
                                  "environment.yml", "keyboard.py", "notes/credentials_howto.md"])
def test_code_that_mentions_secrets_is_kept(name: str) -> None:
    assert not SECRET_NAMES.search(name)


def test_dirty_summary_counts_every_kind_of_change() -> None:
    code = CodeState(Path("/p"), True, "abc", "main", ("a.py",), ("b.py",), ("data.bin",), (".env",))
    assert code.dirty and code.describe() == "1 changed, 3 untracked"
    assert not CodeState(Path("/p"), True, "abc", "main", (), ()).dirty
