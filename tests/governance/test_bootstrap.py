"""The first admin of an empty store (`appliance.governance.bootstrap.initialise`), on SQLite
and PostgreSQL: the admin and their token in one audited transaction, the token saved 0600
where the CLI looks for it, and a store that has users refused.

tests/cli/test_cli_operations.py runs `appliance init` end to end; here: the library call."""

from __future__ import annotations

import stat

import governance_world as gw
import pytest
from sqlmodel import select

from appliance.config import Config
from appliance.errors import ConflictError, InvalidInput
from appliance.governance import audit
from appliance.governance.access import saved_token_path
from appliance.governance.bootstrap import InitPublic, initialise
from appliance.governance.users import authenticate, list_tokens, list_users
from appliance.store import session_scope
from appliance.store.database import redact
from appliance.store.models import AuditEvent, User


@pytest.fixture
def cfg(db_url, tmp_path):
    """An appliance whose home and artifact folder do not exist yet, its audit key and sink
    its own."""
    cfg = Config(home=tmp_path / "home", db_url=db_url, artifacts=tmp_path / "home" / "artifacts")
    with audit.configured(cfg):
        yield cfg


def _events(url: str) -> list[tuple[str, str, str, str]]:
    with session_scope(url) as s:
        return [(e.actor, e.action, e.object_type, e.object_id)
                for e in s.exec(select(AuditEvent).order_by(AuditEvent.id))]


def test_an_empty_store_gets_its_admin_and_the_token_saved_for_this_machine(cfg):
    out = initialise(cfg, admin="root", team="ml-platform")
    assert isinstance(out, InitPublic)
    token_file = saved_token_path(cfg)
    assert out.model_dump() == {
        "home": str(cfg.home), "db_url": redact(cfg.db_url), "artifacts": str(cfg.artifacts),
        "admin": "root", "token_file": str(token_file),
    }
    assert cfg.artifacts.is_dir()
    # Only its owner may read the secret; the file holds the token and nothing else.
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    secret = token_file.read_text()
    assert secret.startswith("apl_") and secret == secret.strip()
    with session_scope(cfg.db_url) as s:
        user = authenticate(s, secret)
        assert (user.name, user.role, user.team) == ("root", "admin", "ml-platform")
        assert [(u.name, u.role) for u in list_users(s)] == [("root", "admin")]
        [token] = list_tokens(s, user)
        assert (token.user, token.name, token.state) == ("root", "init", "active")
        # The secret is shown once, in the file: the store keeps only its hash.
        assert secret not in token.model_dump_json()


def test_the_admin_and_the_token_are_audited_as_their_own_acts(cfg):
    initialise(cfg)  # default name "admin", team "platform"
    assert _events(cfg.db_url) == [("admin", "user.created", "user", "admin"),
                                   ("admin", "token.issued", "user", "admin")]
    with session_scope(cfg.db_url) as s:
        assert s.exec(select(User.team)).one() == "platform"
        # Chained, signed with this appliance's key and checkpointed after the commit.
        result = audit.verify(s, cfg)
    assert result.ok and result.events == 2 and result.checkpoint_events == 2, result


def test_a_store_with_users_is_refused_and_left_as_it_was(cfg):
    gw.people(cfg.db_url)
    before = _events(cfg.db_url)
    with pytest.raises(ConflictError, match="already has users") as caught:
        initialise(cfg, admin="intruder")
    # The message names the store (never its password) and what to do instead.
    assert redact(cfg.db_url) in str(caught.value)
    assert "appliance users create" in str(caught.value)
    assert not saved_token_path(cfg).exists()
    assert _events(cfg.db_url) == before
    with session_scope(cfg.db_url) as s:
        assert "intruder" not in {u.name for u in list_users(s)}


def test_a_second_init_cannot_mint_a_second_admin(cfg):
    initialise(cfg, admin="root")
    first = saved_token_path(cfg).read_text()
    with pytest.raises(ConflictError, match="already has users"):
        initialise(cfg, admin="root2")
    # The saved token is the first admin's still, and still works.
    assert saved_token_path(cfg).read_text() == first
    with session_scope(cfg.db_url) as s:
        assert authenticate(s, first).name == "root"
        assert [u.name for u in list_users(s)] == ["root"]


def test_a_bad_admin_name_changes_nothing(cfg):
    with pytest.raises(InvalidInput, match="user name 'no good'"):
        initialise(cfg, admin="no good")
    assert not saved_token_path(cfg).exists()
    with session_scope(cfg.db_url) as s:
        assert list_users(s) == []
    assert _events(cfg.db_url) == []


def test_a_home_that_does_not_exist_yet_is_created_for_the_token(sqlite_url, tmp_path):
    # Store and artifacts elsewhere (a cluster's shape), the audit key too: nothing else
    # creates the home, and the token file, written after the commit, must still land.
    home = tmp_path / "fresh" / "home"
    cfg = Config(home=home, db_url=sqlite_url, artifacts=tmp_path / "shared" / "artifacts",
                 audit_key_file=tmp_path / "keys" / "audit.key",
                 audit_checkpoints=tmp_path / "keys" / "checkpoints.jsonl")
    with audit.configured(cfg):
        out = initialise(cfg)
    assert out.token_file == str(home / "token")
    assert stat.S_IMODE((home / "token").stat().st_mode) == 0o600
    with session_scope(sqlite_url) as s:
        assert authenticate(s, (home / "token").read_text()).name == "admin"
