"""`flask --app wsgi chat token USER [--rooms R1,R2] [--ttl SECONDS]` (cli.py)."""

import time

import jwt
import pytest

from tests.conftest import AUTH_KEY


def run(app, *args):
    return app.test_cli_runner().invoke(args=["chat", "token", *args])


def test_prints_a_token_for_the_user_signed_with_the_auth_key(token_app):
    result = run(token_app, "ada", "--rooms", "a, b", "--ttl", "60")
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.output.strip(), AUTH_KEY, algorithms=["HS256"])
    assert claims["sub"] == "ada" and claims["rooms"] == ["a", "b"]
    assert 55 <= claims["exp"] - time.time() <= 61


def test_the_token_lasts_an_hour_and_allows_every_room_by_default(token_app):
    claims = jwt.decode(run(token_app, "ada").output.strip(), AUTH_KEY, algorithms=["HS256"])
    assert "rooms" not in claims and 3590 <= claims["exp"] - time.time() <= 3601
    assert token_app.extensions["chat"].verifier.decode(run(token_app, "ada").output.strip())


@pytest.mark.parametrize("args, words", [
    (["a\x07b"], "control"),
    (["ada", "--rooms", "A"], "room"),
    (["ada", "--ttl", "0"], "ttl"),
])
def test_bad_arguments_are_refused(token_app, args, words):
    result = run(token_app, *args)
    assert result.exit_code == 2 and words in result.output


def test_without_an_auth_key_there_is_nothing_to_sign_with(app):
    result = run(app, "ada")
    assert result.exit_code == 2 and "CHAT_AUTH_KEY is not set" in result.output
