"""Tenant secrets sealed at rest: Fernet (AES-128-CBC + HMAC-SHA256) under keys derived from
`SECRET_KEY`.

`SECRET_KEY` may list several keys: the first seals, every one opens (MultiFernet). Rotation:
put a new key first, run `rokt-sfmc tenants reseal` (every stored secret sealed again under the
new key), then drop the old key. A Redis dump alone never reveals a client secret.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SALT = b"rokt-sfmc"
_INFO = b"tenant-secrets/v1"


class SecretUnreadable(Exception):
    """A sealed value none of the configured keys opens (wrong or dropped SECRET_KEY)."""


def derive_key(secret_key: str, info: bytes) -> bytes:
    """32 bytes for one purpose (`info`) from an operator's passphrase-like SECRET_KEY
    (HKDF-SHA256): a key of one purpose tells nothing of another's."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(secret_key.encode())


def derive_fernet_key(secret_key: str) -> bytes:
    """A Fernet key from SECRET_KEY."""
    return base64.urlsafe_b64encode(derive_key(secret_key, _INFO))


class SecretBox:
    def __init__(self, secret_keys: Sequence[str]) -> None:
        if not secret_keys:
            raise ValueError("SECRET_KEY is required to store tenant secrets (App Settings, tenants add)")
        self._fernet = MultiFernet([Fernet(derive_fernet_key(key)) for key in secret_keys])

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise SecretUnreadable("a stored secret cannot be opened with SECRET_KEY") from exc

    def reseal(self, sealed: str) -> str:
        """The same secret sealed under the first (newest) key."""
        try:
            return self._fernet.rotate(sealed.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError) as exc:
            raise SecretUnreadable("a stored secret cannot be opened with SECRET_KEY") from exc
