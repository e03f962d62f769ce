"""The federation file is validated on load; errors name the file, the entry and the fix."""

from __future__ import annotations

import pytest

from fdp_kernel.config import DEMO_FEDERATION, FEDERATION_ENV, find_federation, load_federation
from fdp_kernel.errors import ConfigError

GOOD = """\
version: 1
federation: {name: test, synthetic: true, as_of: 2026-10-31}
organisations:
  - {code: QSY, name: ICB, type: icb, store: stores/QSY.duckdb}
  - {code: RSA, name: Trust, type: acute_trust, parent_icb: QSY, store: stores/RSA.duckdb}
"""


def write(tmp_path, text):
    path = tmp_path / "federation.yaml"
    path.write_text(text)
    return path


def test_a_valid_file_loads_with_paths_relative_to_it(tmp_path):
    fed = load_federation(write(tmp_path, GOOD))
    assert fed.org("RSA").store == (tmp_path / "stores" / "RSA.duckdb").resolve()
    assert fed.org("RSA").parent_icb == "QSY"
    assert [o.code for o in fed.orgs_of_type("icb")] == ["QSY"]
    assert load_federation(tmp_path).path == fed.path  # a folder works too


@pytest.mark.parametrize(
    "text, message",
    [
        ("version: 1\norganisations: [", "not valid YAML"),
        (GOOD.replace("version: 1", "version: 9"), "unsupported version 9"),
        (GOOD.replace("type: icb", "type: hospital"), "organisations[0] (QSY): unknown type"),
        (GOOD.replace("code: RSA", "code: RSAX"), "not an ODS code"),
        (GOOD.replace(", store: stores/RSA.duckdb", ""), "(RSA): 'store' is missing"),
        (GOOD.replace("parent_icb: QSY", "parent_icb: QXX"), "parent_icb 'QXX' is not"),
        (GOOD + "  - {code: RSA, name: T, type: acute_trust, store: s.duckdb}\n", "listed twice"),
        ("version: 1\norganisations: []\n", "expected a non-empty list"),
        (GOOD.replace("as_of: 2026-10-31", "as_of: soon"), "federation.as_of"),
    ],
)
def test_errors_name_the_file_the_entry_and_the_fix(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_federation(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)
    assert "Fix:" in str(err.value)


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match="fdp synth"):
        load_federation(tmp_path / "nowhere" / "federation.yaml")


def test_unknown_org_lookup_lists_what_exists(tmp_path):
    fed = load_federation(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="organisations are: QSY, RSA"):
        fed.org("RXX")


def test_find_federation_takes_the_given_path_then_the_environment_then_data_demo_above(
    tmp_path, monkeypatch
):
    given, named = tmp_path / "given.yaml", tmp_path / "named.yaml"
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert find_federation({FEDERATION_ENV: str(named)}, given) == given
    assert find_federation({FEDERATION_ENV: str(named)}) == named
    with pytest.raises(ConfigError, match=f"no federation file: set {FEDERATION_ENV}"):
        find_federation({FEDERATION_ENV: ""})
    assert find_federation({}, required=False) is None
    demo = tmp_path / DEMO_FEDERATION
    demo.parent.mkdir(parents=True)
    demo.write_text(GOOD)
    assert find_federation({}) == demo.resolve()
