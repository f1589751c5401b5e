"""Token mode's public keys: a PEM public key, and the one algorithm it names.

Apart from auth.py so that config.py can check a key when the server starts
without importing PyJWT (gunicorn's master reads the settings before its
workers apply gevent's monkey patch, and PyJWT imports ssl).
"""

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

RSA_MIN_BITS = 2048  # shorter RSA keys are breakable (NIST SP 800-131A)


def load_public_key(pem):
    """(key, algorithm) of a PEM public key: RS256 for RSA, ES256 for P-256.

    Raises ValueError, saying why, for anything else.
    """
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < RSA_MIN_BITS:
            raise ValueError(f"an RSA key must have at least {RSA_MIN_BITS} bits, "
                             f"not {key.key_size}")
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    raise ValueError("the key must be an RSA key (RS256) or a P-256 EC key (ES256)")
