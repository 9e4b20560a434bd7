"""The national role's configuration and the district's [national] section are strict like every role's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tpskit.config import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


NATIONAL = """
[nats]
servers = ["nats://127.0.0.1:4222"]

[database]
url = "postgresql+psycopg://national@127.0.0.1/national"

[[districts]]
id = "kab-test"
ca = "kab-test/ca.pem"
tps_list = "kab-test/tps.csv"
"""


def test_national_config_resolves_district_files_next_to_it(tmp_path):
    from tpskit.national.config import load_national_config

    cfg = load_national_config(write(tmp_path / "national.toml", NATIONAL))
    assert cfg.districts[0].ca == tmp_path / "kab-test" / "ca.pem"
    assert cfg.nats.durable == "national" and cfg.nats.replicas == 3


@pytest.mark.parametrize(("change", "named"), [
    (("[nats]", "[nats]\nserver = 1"), r"nats\.server: unknown key"),
    (('url = "postgresql+psycopg://', 'url = "sqlite:///'), "the national store is PostgreSQL"),
    (('servers = ["nats://', 'servers = ["http://'), r"a NATS server is nats://host:port"),
    (('tps_list = "kab-test/tps.csv"', 'tps_list = "kab-test/tps.csv"\n\n[[districts]]\nid = "kab-test"\n'
                                       'ca = "x.pem"\ntps_list = "y.csv"'), "districts listed twice: kab-test"),
])
def test_a_bad_national_config_is_refused_naming_the_key(tmp_path, change, named):
    from tpskit.national.config import load_national_config

    with pytest.raises(ConfigError, match=named):
        load_national_config(write(tmp_path / "national.toml", NATIONAL.replace(*change)))


def test_district_forwarding_is_off_by_default_and_needs_servers_when_on(tmp_path):
    from tpskit.district.config import load_district_config

    base = '[district]\nid = "kab-test"\n'
    assert load_district_config(write(tmp_path / "a.toml", base)).national.enabled is False
    with pytest.raises(ConfigError, match="needs servers"):
        load_district_config(write(tmp_path / "b.toml", base + "[national]\nenabled = true\n"))
    with pytest.raises(ConfigError, match=r"national\.stream: unknown key"):
        load_district_config(write(tmp_path / "c.toml", base + '[national]\nstream = "X"\n'))
