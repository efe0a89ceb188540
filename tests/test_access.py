"""brainclf.serving.access: roles from the server's role table and what each role may do."""

from __future__ import annotations

import pytest

from brainclf.serving import ACTIONS, PAGE_ACTIONS, RoleRules, Settings, can, identity_for, local_identity, role_for

RULES = RoleRules(emails={"boss@hospital.example": "admin", "*@hospital.example": "clinician",
                          "res@uni.example": "researcher"},
                  subjects={"sub-42": "researcher"}, groups={"radiology-research": "researcher", "it": "admin"})


def user(**claims) -> dict:
    """Signed in, with an address the provider says is verified unless the claims say otherwise."""
    return {"is_logged_in": True, **({"email_verified": True} if "email" in claims else {}), **claims}


def test_rights_per_role():
    assert {a for a in ACTIONS if can("clinician", a)} == {"open_home", "open_predict", "open_evaluation"}
    assert {a for a in ACTIONS if can("researcher", a)} == {"open_home", "open_predict", "open_evaluation",
                                                            "open_model", "re_evaluate", "train", "upload_model",
                                                            "site_workflow"}
    assert {a for a in ACTIONS if can("admin", a)} == ACTIONS
    assert {"remove_model", "audit_settings", "cancel_any_training"} <= ACTIONS
    for nobody in (None, "", "guest", "ADMIN"):
        assert not any(can(nobody, a) for a in ACTIONS)
    assert set(PAGE_ACTIONS.values()) <= ACTIONS


def test_unknown_action_fails_loudly():
    with pytest.raises(ValueError, match="unknown action"):
        can("admin", "retrain")


@pytest.mark.parametrize("claims,role", [
    (user(email="boss@hospital.example"), "admin"),
    (user(email="BOSS@Hospital.Example "), "admin"),  # e-mails match case-insensitively
    (user(email="dr.who@hospital.example"), "clinician"),  # '*@domain'
    (user(email="dr.who@sub.hospital.example"), None),  # a sub-domain is another domain
    (user(email="res@uni.example"), "researcher"),
    (user(email="boss@hospital.example", email_verified=False), None),  # an unverified e-mail counts for nothing
    # ...however the provider spells "not verified" (some user-info endpoints send strings)
    (user(email="boss@hospital.example", email_verified="false"), None),
    (user(email="boss@hospital.example", email_verified="False"), None),
    (user(email="boss@hospital.example", email_verified=0), None),
    (user(email="boss@hospital.example", email_verified=None), None),
    (user(email="boss@hospital.example", email_verified="true"), "admin"),
    (user(email="boss@hospital.example", email_verified=True), "admin"),
    (user(sub="sub-42"), "researcher"),
    (user(sub="sub-43"), None),
    (user(email="dr.who@hospital.example", groups=["radiology-research"]), "researcher"),  # highest wins
    (user(email="x@y.example", groups="staff it"), "admin"),  # a groups claim sent as one string
    (user(email="x@y.example", groups=["staff"]), None),
    ({"is_logged_in": False, "email": "boss@hospital.example"}, None),  # not signed in
    ({"email": "boss@hospital.example"}, None),
    ({}, None),
    (None, None),
])
def test_role_for(claims, role):
    assert role_for(claims, RULES) == role


def test_groups_claim_name_comes_from_the_settings():
    rules = RoleRules(groups={"research": "researcher"}, groups_claim="roles")
    assert role_for(user(roles=["research"]), rules) == "researcher"
    assert role_for(user(groups=["research"]), rules) is None


def test_identities():
    from pathlib import Path

    settings = Settings(data_roots=(), models_dir=Path("m"), runs_dir=Path("r"), audit_dir=Path("a"), roles=RULES)
    who = identity_for(user(email="dr.who@hospital.example", sub="s1", name="Dr Who"), settings)
    assert (who.local, who.signed_in, who.role, who.user_id, who.label) == (False, True, "clinician", "sub:s1",
                                                                              "Dr Who")
    assert who.can("open_predict") and not who.can("re_evaluate") and not who.is_admin
    assert identity_for({"is_logged_in": False}, settings).signed_in is False
    assert identity_for(user(email="A@B.example"), settings).user_id == "email:a@b.example"
    me = local_identity()
    assert me.local and me.is_admin and all(me.can(a) for a in ACTIONS)


def test_an_address_without_a_verified_claim_counts_only_where_the_role_table_says_so():
    """Anyone can open an account with any address at a provider that does not verify it: a '*@domain' rule
    must not let such a token in unless the server's admin says the provider sends no claim and verifies all."""
    from dataclasses import replace

    unclaimed = {"is_logged_in": True, "email": "dr.who@hospital.example"}
    assert role_for(unclaimed, RULES) is None
    assert role_for(unclaimed, replace(RULES, require_email_verified=False)) == "clinician"
    assert role_for({**unclaimed, "email_verified": False}, replace(RULES, require_email_verified=False)) is None


def test_the_role_table_reads_require_email_verified(tmp_path):
    from brainclf.errors import ConfigError
    from brainclf.serving import load_settings

    toml = tmp_path / "brainclf.toml"
    toml.write_text('[roles]\nrequire_email_verified = false\n[roles.clinician]\nemails = ["*@h.example"]\n')
    assert load_settings(toml).roles.require_email_verified is False
    toml.write_text('[roles.clinician]\nemails = ["*@h.example"]\n')
    assert load_settings(toml).roles.require_email_verified is True
    toml.write_text('[roles]\nrequire_email_verified = "no"\n')
    with pytest.raises(ConfigError, match="require_email_verified must be true or false"):
        load_settings(toml)


def test_a_denied_user_has_no_role_whatever_group_or_domain_matches(tmp_path):
    from brainclf.errors import ConfigError
    from brainclf.serving import load_settings

    toml = tmp_path / "brainclf.toml"
    toml.write_text('[roles]\ndeny = ["Former.Admin@h.example", "sub-of-someone", "John.Doe@Corp.example", '
                    '"*@contractor.example"]\n'
                    '[roles.admin]\ngroups = ["it-admins"]\nsubjects = ["John.Doe@Corp.example"]\n'
                    '[roles.researcher]\nemails = ["*@contractor.example"]\n'
                    '[roles.clinician]\nemails = ["*@h.example"]\n')
    rules = load_settings(toml).roles
    assert role_for(user(email="former.admin@h.example", groups=["it-admins"]), rules) is None
    assert role_for(user(email="other@h.example", sub="sub-of-someone"), rules) is None
    assert role_for(user(email="jd@h.example", sub="John.Doe@Corp.example"), rules) is None  # a subject as written
    assert role_for(user(email="Temp@Contractor.example"), rules) is None  # a whole domain
    assert role_for(user(email="colleague@h.example", groups=["it-admins"]), rules) == "admin"  # nobody else
    toml.write_text('[roles]\ndeny = "former.admin@h.example"\n')
    with pytest.raises(ConfigError, match=r"\[roles\] deny must be a list of e-mails and subjects"):
        load_settings(toml)


def _settings(roles: RoleRules | None = None) -> Settings:
    from pathlib import Path

    return Settings(data_roots=(), models_dir=Path("m"), runs_dir=Path("r"), audit_dir=Path("a"),
                    roles=roles or RoleRules())


LOOPBACK_HOSTS = ["localhost", "127.0.0.1"]


@pytest.mark.parametrize("address", ["10.0.0.5", "192.168.1.2", "0.0.0.0", "", None, "::"])
def test_local_mode_refuses_an_address_other_machines_reach(address):
    from brainclf.serving.access import local_mode_problem

    problem = local_mode_problem(address, LOOPBACK_HOSTS, _settings())
    assert problem is not None and "serves 127.0.0.1 only" in problem


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_local_mode_runs_on_a_loopback_address(address):
    from brainclf.serving.access import local_mode_problem

    assert local_mode_problem(address, LOOPBACK_HOSTS, _settings()) is None
    assert local_mode_problem(address, ["localhost"], _settings()) is None


@pytest.mark.parametrize("hosts", [[], None, ["localhost", "evil.example"], ["*"]])
def test_local_mode_refuses_allowed_hosts_beyond_the_loopback_names(hosts):
    from brainclf.serving.access import local_mode_problem

    problem = local_mode_problem("127.0.0.1", hosts, _settings())
    assert problem is not None and "server.allowedHosts" in problem


@pytest.mark.parametrize("roles", [RoleRules(emails={"*@h.example": "clinician"}),
                                   RoleRules(groups={"it": "admin"}), RoleRules(subjects={"sub-42": "researcher"})])
def test_local_mode_refuses_a_role_table_of_any_kind(roles):
    """A server whose settings name roles (by e-mail, group or subject) is meant to have sign-in."""
    from brainclf.serving.access import local_mode_problem

    problem = local_mode_problem("127.0.0.1", LOOPBACK_HOSTS, _settings(roles))
    assert problem is not None and "settings name roles" in problem
