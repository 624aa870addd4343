from __future__ import annotations

import pytest

from templates import load_file, resolve_env
from templates.envvars import EnvError, check_env, parse_dotenv
from tests.support.examples import EXAMPLES


def test_parse_dotenv_seed_example() -> None:
    text = (EXAMPLES / "inputs" / "dummy" / "env").read_text()
    assert parse_dotenv(text) == {
        "SOURCE": "/etc/os-release",
        "DESTINATION": "/output/result",
        "SLEEPTIME": "10",
    }


def test_parse_dotenv_quotes_comments_no_expansion() -> None:
    text = "# c\nexport A=\"x y\"\nB='$(rm -rf /)'\nC=${A}\n"
    assert parse_dotenv(text) == {"A": "x y", "B": "$(rm -rf /)", "C": "${A}"}


@pytest.mark.parametrize("text", ["just words\n", "A=1\nA=2\n", "A\n", "A=\x00\n"])
def test_parse_dotenv_rejects(text: str) -> None:
    with pytest.raises(EnvError):
        parse_dotenv(text)


@pytest.mark.parametrize("key", ["LD_PRELOAD", "PATH", "PYTHONPATH", "ARGO_TEMPLATE", "1BAD", "A-B"])
def test_unsafe_or_invalid_keys(key: str) -> None:
    with pytest.raises(EnvError):
        check_env({key: "x"}, allowed=None)


def test_allowed_keys_and_explicit_unsafe() -> None:
    with pytest.raises(EnvError, match="not one of the keys"):
        check_env({"OTHER": "1"}, allowed=["A"])
    assert check_env({"LD_PRELOAD": "/x.so"}, allowed=None, allow_unsafe=["LD_PRELOAD"]) == {"LD_PRELOAD": "/x.so"}


def test_resolve_env_defaults_dotenv_parameters() -> None:
    asset = load_file(EXAMPLES / "dummy.yaml")
    env = resolve_env(asset, {"env": "SOURCE=/a\nDESTINATION=/output/result\n"}, {"SLEEPTIME": "1"})
    assert env == {"SOURCE": "/a", "DESTINATION": "/output/result", "SLEEPTIME": "1"}
    assert resolve_env(asset, {}, {"SOURCE": "/a", "DESTINATION": "/b"})["SLEEPTIME"] == "10"
    with pytest.raises(EnvError, match="required keys missing"):
        resolve_env(asset, {}, {"SOURCE": "/a"})
    with pytest.raises(EnvError, match="not accepted"):
        resolve_env(asset, {}, {"SOURCE": "/a", "DESTINATION": "/b", "EXTRA": "1"})
    with pytest.raises(EnvError, match="input 'env'"):
        resolve_env(asset, {"env": "LD_PRELOAD=/x\n"}, {})
