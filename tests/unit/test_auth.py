"""Tokens (auth.py): what each configured key accepts and refuses, table by table."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chat_app.auth import Identity, Verifier, bearer, identity, issue, request_token
from chat_app.config import Settings
from chat_app.exceptions import AuthRefused
from chat_app.keys import load_public_key
from tests.conftest import AUTH_KEY
from tests.tokens import _pems, ec_pems, families, hs256_by_hand, rsa_pems, unsigned

FAMILIES = {family.name: family for family in families()}
OTHER_RSA_PRIVATE, _ = _pems(rsa.generate_private_key(public_exponent=65537, key_size=2048))
OTHER_EC_PRIVATE, _ = _pems(ec.generate_private_key(ec.SECP256R1()))
FOREIGN = {"HS256": "another-secret-of-at-least-32-bytes!", "RS256": OTHER_RSA_PRIVATE,
           "ES256": OTHER_EC_PRIVATE}
# Another algorithm (and what signs with it), which the server must refuse all the same.
OTHER_ALGORITHM = {"HS256": ("HS512", AUTH_KEY), "RS256": ("PS256", None),
                   "ES256": ("RS256", OTHER_RSA_PRIVATE)}


def later(seconds):
    return int(time.time() + seconds)


def verifier(family):
    settings = Settings(auth_key=AUTH_KEY) if family.name == "HS256" else \
        Settings(auth_public_key=family.public_pem)
    return Verifier.from_settings(settings)


# name, how to make the token from the family, room, user parameter, and what
# comes of it: the user admitted, or (status, words of the reason).
CASES = [
    ("valid", lambda f: f.sign("ada"), "lobby", None, "ada"),
    ("valid, with its user given", lambda f: f.sign("ada"), "lobby", "ada", "ada"),
    ("valid, sub trimmed like a user", lambda f: f.sign(" ada "), "lobby", "ada", "ada"),
    ("valid, in an allowed room", lambda f: f.sign("ada", rooms=["a", "b"]), "b", None, "ada"),
    ("valid, not expired yet", lambda f: f.sign("ada", exp=later(60)), "lobby", None, "ada"),
    ("valid, nbf passed", lambda f: f.sign("ada", nbf=later(-5)), "lobby", None, "ada"),
    ("no token", lambda f: None, "lobby", None, (401, "required")),
    ("empty token", lambda f: "", "lobby", None, (401, "required")),
    ("garbage", lambda f: "not-a-token", "lobby", None, (401, "malformed")),
    ("three garbage parts", lambda f: "eyJ.eyJ.xx", "lobby", None, (401, "malformed")),
    ("bad signature", lambda f: f.sign("ada", key=FOREIGN[f.name]), "lobby", None,
     (401, "not signed")),
    ("tampered payload", lambda f: tamper(f.sign("ada")), "lobby", None, (401, "not signed")),
    ("alg none", lambda f: unsigned({"sub": "ada"}), "lobby", None, (401, "malformed")),
    ("wrong algorithm", lambda f: other_algorithm(f), "lobby", None, (401, "malformed")),
    ("HS256 signed with the public key", lambda f: hs256_by_hand(f.public_pem or AUTH_KEY + "x",
                                                                 {"sub": "ada"}),
     "lobby", None, (401, "not signed")),
    ("expired", lambda f: f.sign("ada", exp=later(-1)), "lobby", None, (401, "expired")),
    ("nbf ahead", lambda f: f.sign("ada", nbf=later(60)), "lobby", None, (401, "not valid yet")),
    ("room not allowed", lambda f: f.sign("ada", rooms=["a"]), "b", None, (403, "room")),
    ("no room allowed", lambda f: f.sign("ada", rooms=[]), "lobby", None, (403, "room")),
    ("user mismatch", lambda f: f.sign("ada"), "lobby", "bob", (403, "user")),
    ("sub missing", lambda f: jwt_without_sub(f), "lobby", None, (401, "malformed")),
    ("sub empty", lambda f: f.sign(""), "lobby", None, (401, "sub")),
    ("sub too long", lambda f: f.sign("x" * 33), "lobby", None, (401, "sub")),
    ("sub with a control character", lambda f: f.sign("a\x07b"), "lobby", None, (401, "sub")),
    ("sub not a string", lambda f: f.sign(7), "lobby", None, (401, "malformed")),
    ("an audience", lambda f: f.sign("ada", aud="another-app"), "lobby", None, (401, "malformed")),
    ("rooms not a list", lambda f: f.sign("ada", rooms="lobby"), "lobby", None, (401, "rooms")),
    ("rooms not names", lambda f: f.sign("ada", rooms=[1]), "lobby", None, (401, "rooms")),
]


def tamper(token):
    head, body, signature = token.split(".")
    claims = jwt.utils.base64url_encode(b'{"sub":"bob"}').decode()
    return f"{head}.{claims}.{signature}"


def other_algorithm(family):
    algorithm, key = OTHER_ALGORITHM[family.name]
    return family.sign("ada", algorithm=algorithm, key=key)


def jwt_without_sub(family):
    return jwt.encode({"name": "ada"}, family.signing_key, algorithm=family.name)


@pytest.mark.parametrize("family", list(FAMILIES), ids=str)
@pytest.mark.parametrize("case, make, room, user, outcome", CASES, ids=[c[0] for c in CASES])
def test_a_token_is_admitted_or_refused(family, case, make, room, user, outcome):
    family = FAMILIES[family]
    check = verifier(family)
    try:
        admitted = check.decode(make(family)).admit(room, user)
    except AuthRefused as exc:
        assert isinstance(outcome, tuple), f"{case}: refused ({exc.status} {exc.message})"
        status, words = outcome
        assert (exc.status, words in exc.message) == (status, True), exc.message
    else:
        assert admitted == outcome, case


def test_an_hs256_token_signed_with_the_public_key_is_refused_by_each_public_key():
    """The key-confusion attack: the PEM text, public, used as an HMAC secret."""
    for name in ("RS256", "ES256"):
        family = FAMILIES[name]
        forged = hs256_by_hand(family.public_pem, {"sub": "ada"})
        with pytest.raises(AuthRefused) as refused:
            verifier(family).decode(forged)
        assert refused.value.status == 401


def test_the_identity_carries_the_rooms_and_the_expiry():
    exp = later(60)
    got = verifier(FAMILIES["RS256"]).decode(FAMILIES["RS256"].sign("ada", rooms=["a"], exp=exp))
    assert got == Identity("ada", frozenset({"a"}), float(exp))
    assert identity({"sub": "bo"}) == Identity("bo", None, None)


def test_open_mode_has_no_verifier():
    assert Verifier.from_settings(Settings()) is None


# --- the keys ---------------------------------------------------------------

@pytest.mark.parametrize("pem, algorithm", [
    (rsa_pems()[1], "RS256"),
    (ec_pems()[1], "ES256"),
])
def test_a_public_key_names_its_algorithm(pem, algorithm):
    assert load_public_key(pem)[1] == algorithm


@pytest.mark.parametrize("pem, reason", [
    ("not a key", "not a PEM public key"),
    (rsa_pems()[0], "not a PEM public key"),  # a private key
    (ec_pems(ec.SECP384R1)[1], "P-256"),
    (_pems(rsa.generate_private_key(public_exponent=65537, key_size=1024))[1], "2048"),
])
def test_other_keys_are_refused_saying_why(pem, reason):
    with pytest.raises(ValueError, match=reason):
        load_public_key(pem)


# --- where the token is -------------------------------------------------------

@pytest.mark.parametrize("authorization, parameter, expected", [
    (None, None, None),
    (None, "t1", "t1"),
    ("Bearer t1", None, "t1"),
    ("bearer   t1  ", None, "t1"),
    ("Basic dXNlcjpwdw==", "t1", "t1"),  # another scheme (a proxy's) is not ours
    ("Bearer", None, None),
    ("Bearer t1", "t1", 401),
])
def test_the_token_comes_in_the_header_or_the_parameter_once(authorization, parameter, expected):
    if expected == 401:
        with pytest.raises(AuthRefused) as refused:
            request_token(authorization, parameter)
        assert refused.value.status == 401
    else:
        assert request_token(authorization, parameter) == expected


def test_a_token_that_is_not_unicode_text_is_refused():
    """A lone surrogate cannot be encoded: the token is malformed (401), no other error."""
    with pytest.raises(AuthRefused) as refused:
        Verifier(AUTH_KEY, "HS256").decode("eyJ\ud9de.x.y")
    assert refused.value.status == 401


def test_bearer_reads_only_the_bearer_scheme():
    assert bearer("Bearer k") == "k" and bearer("Token k") is None and bearer(None) is None


# --- issuing (the CLI's) -----------------------------------------------------------

def test_issue_signs_an_hs256_token_that_decodes_to_its_claims():
    token = issue(AUTH_KEY, "ada", ["a", "b"], ttl=60, now=1_000)
    claims = jwt.decode(token, AUTH_KEY, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sub": "ada", "iat": 1_000, "rooms": ["a", "b"], "exp": 1_060}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert jwt.decode(issue(AUTH_KEY, "bo"), AUTH_KEY, algorithms=["HS256"])["sub"] == "bo"
