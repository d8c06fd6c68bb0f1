"""Secrets kept at rest (bot tokens of OAuth installs), encrypted with ENCRYPTION_KEYS.

Fernet (AES-128-CBC with HMAC-SHA256, from the `cryptography` package) under MultiFernet:
the first key encrypts, every key decrypts, so a new key goes first and the old one stays
listed while stored tokens are re-encrypted (each is, the next time it is read); then the
old key can be dropped. A key is 32 random bytes in URL-safe base64, as
`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`
prints.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

GENERATE = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


class UnreadableSecret(Exception):
    """Stored ciphertext no key in ENCRYPTION_KEYS opens (a key was dropped too soon)."""


def check_keys(raw: str) -> list[str]:
    """The comma-separated keys, each checked; ValueError naming the bad one's position."""
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    for i, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ValueError(
                f"key {i} is not a Fernet key (32 url-safe base64 bytes); make one with: {GENERATE}"
            ) from None
    return keys


class Cipher:
    """Encrypts with the first key, decrypts with any."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._primary = Fernet(keys[0])
        self._all = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        """Ciphertext (ASCII) of `plaintext`, under the first key."""
        return self._all.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext; UnreadableSecret when no key opens it."""
        try:
            return self._all.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise UnreadableSecret("no key in ENCRYPTION_KEYS opens a stored secret") from None

    def is_current(self, ciphertext: str) -> bool:
        """True when the first key opens it (nothing to re-encrypt)."""
        try:
            self._primary.decrypt(ciphertext.encode())
        except InvalidToken:
            return False
        return True
