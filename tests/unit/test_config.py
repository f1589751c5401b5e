"""Settings.from_env: every environment variable, its default, and what it refuses."""

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chat_app.config import Settings
from tests.tokens import ec_pems, rsa_pems

EC_PUBLIC = ec_pems()[1]

DEFAULTS = {
    "redis_url": None, "redis_prefix": "chat:", "archive_size": 100, "max_message_chars": 2000,
    "longpoll_timeout": 25.0, "rate_burst": 20, "rate_per_sec": 5.0, "send_queue": 256,
    "ping_interval": 25.0, "allowed_origins": (), "presence_ttl": 60.0, "fanout_interval": 0.005,
    "secret_key": None, "log_format": "text", "auth_key": None, "auth_public_key": None,
    "api_key": None, "worker_connections": 50000, "open_files": None, "backlog": None,
}

# variable, value in the environment, field, what the field holds
PARSED = [
    ("REDIS_URL", "redis://cache.internal:6380/2", "redis_url", "redis://cache.internal:6380/2"),
    ("CHAT_REDIS_PREFIX", "staging:", "redis_prefix", "staging:"),
    ("CHAT_ARCHIVE_SIZE", "500", "archive_size", 500),
    ("CHAT_ARCHIVE_SIZE", "1", "archive_size", 1),
    ("CHAT_MAX_MESSAGE_CHARS", "80", "max_message_chars", 80),
    ("CHAT_LONGPOLL_TIMEOUT", "2.5", "longpoll_timeout", 2.5),
    ("CHAT_LONGPOLL_TIMEOUT", "0", "longpoll_timeout", 0.0),
    ("CHAT_RATE_BURST", "3", "rate_burst", 3),
    ("CHAT_RATE_PER_SEC", "0.5", "rate_per_sec", 0.5),
    ("CHAT_RATE_PER_SEC", "0.001", "rate_per_sec", 0.001),
    ("CHAT_SEND_QUEUE", "16", "send_queue", 16),
    ("CHAT_PING_INTERVAL", "0.1", "ping_interval", 0.1),
    ("CHAT_ALLOWED_ORIGINS", " https://Chat.Example/ ,, http://other:8080,  ,",
     "allowed_origins", ("https://chat.example", "http://other:8080")),
    ("CHAT_ALLOWED_ORIGINS", "HTTPS://A.EXAMPLE", "allowed_origins", ("https://a.example",)),
    ("CHAT_PRESENCE_TTL", "1", "presence_ttl", 1.0),
    ("CHAT_FANOUT_INTERVAL", "0", "fanout_interval", 0.0),
    ("CHAT_FANOUT_INTERVAL", "0.02", "fanout_interval", 0.02),
    ("SECRET_KEY", "s3cret", "secret_key", "s3cret"),
    ("CHAT_LOG_FORMAT", "json", "log_format", "json"),
    ("CHAT_LOG_FORMAT", "JSON", "log_format", "json"),
    ("CHAT_AUTH_KEY", "k" * 32, "auth_key", "k" * 32),
    ("CHAT_AUTH_PUBLIC_KEY", EC_PUBLIC, "auth_public_key", EC_PUBLIC),
    ("CHAT_AUTH_PUBLIC_KEY", rsa_pems()[1], "auth_public_key", rsa_pems()[1]),
    ("CHAT_API_KEY", "a" * 16, "api_key", "a" * 16),
    ("CHAT_WORKER_CONNECTIONS", "1", "worker_connections", 1),
    ("CHAT_WORKER_CONNECTIONS", "100000", "worker_connections", 100000),
    ("CHAT_OPEN_FILES", "257", "open_files", 257),
    ("CHAT_OPEN_FILES", "65536", "open_files", 65536),
    ("CHAT_BACKLOG", "1", "backlog", 1),
    ("CHAT_BACKLOG", "16384", "backlog", 16384),
]

EMPTY_IS_THE_DEFAULT = [
    "REDIS_URL", "CHAT_ARCHIVE_SIZE", "CHAT_MAX_MESSAGE_CHARS", "CHAT_LONGPOLL_TIMEOUT",
    "CHAT_RATE_BURST", "CHAT_RATE_PER_SEC", "CHAT_SEND_QUEUE", "CHAT_PING_INTERVAL",
    "CHAT_ALLOWED_ORIGINS", "CHAT_PRESENCE_TTL", "CHAT_FANOUT_INTERVAL", "SECRET_KEY",
    "CHAT_REDIS_PREFIX", "CHAT_LOG_FORMAT", "CHAT_AUTH_KEY", "CHAT_AUTH_PUBLIC_KEY", "CHAT_API_KEY",
    "CHAT_WORKER_CONNECTIONS", "CHAT_OPEN_FILES", "CHAT_BACKLOG",
]

# variable, a value it refuses: malformed, or under its minimum
REFUSED = [
    ("CHAT_ARCHIVE_SIZE", "0"), ("CHAT_ARCHIVE_SIZE", "ten"), ("CHAT_ARCHIVE_SIZE", "1.5"),
    ("CHAT_MAX_MESSAGE_CHARS", "0"), ("CHAT_MAX_MESSAGE_CHARS", "2k"),
    ("CHAT_LONGPOLL_TIMEOUT", "-1"), ("CHAT_LONGPOLL_TIMEOUT", "soon"),
    ("CHAT_RATE_BURST", "0"), ("CHAT_RATE_BURST", "-3"),
    ("CHAT_RATE_PER_SEC", "0"), ("CHAT_RATE_PER_SEC", "0.0009"), ("CHAT_RATE_PER_SEC", "fast"),
    ("CHAT_SEND_QUEUE", "0"), ("CHAT_SEND_QUEUE", "many"),
    ("CHAT_PING_INTERVAL", "0.05"), ("CHAT_PING_INTERVAL", "nan"),
    ("CHAT_PRESENCE_TTL", "0.5"), ("CHAT_PRESENCE_TTL", "1m"),
    ("CHAT_FANOUT_INTERVAL", "-0.001"), ("CHAT_FANOUT_INTERVAL", "5ms"),
    ("CHAT_LOG_FORMAT", "xml"),
    ("CHAT_REDIS_PREFIX", "chat{a}:"), ("CHAT_REDIS_PREFIX", "}"),  # a cluster hash tag
    ("CHAT_AUTH_KEY", "k" * 31),
    ("CHAT_AUTH_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----"),
    ("CHAT_AUTH_PUBLIC_KEY", "/nonexistent/chat-key.pem"),
    ("CHAT_AUTH_PUBLIC_KEY", ec_pems(ec.SECP384R1)[1]),
    ("CHAT_AUTH_PUBLIC_KEY", rsa_pems()[0]),
    ("CHAT_API_KEY", "a" * 15),
    ("CHAT_WORKER_CONNECTIONS", "0"), ("CHAT_WORKER_CONNECTIONS", "20k"),
    ("CHAT_OPEN_FILES", "256"), ("CHAT_OPEN_FILES", "unlimited"),  # 256: the worker's own files
    ("CHAT_BACKLOG", "0"), ("CHAT_BACKLOG", "-1"),
]


def test_an_empty_environment_gives_the_defaults():
    assert dataclasses.asdict(Settings.from_env({})) == DEFAULTS
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("name, raw, field, value", PARSED)
def test_each_variable_sets_its_field_and_only_it(name, raw, field, value):
    assert Settings.from_env({name: raw}) == Settings(**{**DEFAULTS, field: value})


@pytest.mark.parametrize("name", EMPTY_IS_THE_DEFAULT)
def test_an_empty_value_means_the_default(name):
    assert Settings.from_env({name: ""}) == Settings()


@pytest.mark.parametrize("name, raw", REFUSED)
def test_a_malformed_or_too_small_value_is_refused_with_its_name(name, raw):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: raw})


def test_the_process_environment_is_read_when_none_is_given(monkeypatch):
    monkeypatch.setenv("CHAT_ARCHIVE_SIZE", "7")
    assert Settings.from_env().archive_size == 7


def test_the_public_key_may_be_the_path_of_a_pem_file(tmp_path):
    path = tmp_path / "chat.pem"
    path.write_text(EC_PUBLIC)
    assert Settings.from_env({"CHAT_AUTH_PUBLIC_KEY": str(path)}).auth_public_key == EC_PUBLIC


def test_token_mode_takes_one_key_not_both():
    with pytest.raises(ValueError, match="CHAT_AUTH_KEY .* or CHAT_AUTH_PUBLIC_KEY"):
        Settings.from_env({"CHAT_AUTH_KEY": "k" * 32, "CHAT_AUTH_PUBLIC_KEY": EC_PUBLIC})


def test_secrets_stay_out_of_the_settings_repr():
    text = repr(Settings.from_env({"CHAT_AUTH_KEY": "k" * 32, "CHAT_API_KEY": "a" * 16}))
    assert "k" * 32 not in text and "a" * 16 not in text
