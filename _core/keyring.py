"""memberlist's keyring and AES-GCM payload encryption (shared/spec/memberlist-wire.md §2).

Blob layout (`encryptPayload` in hashicorp/memberlist security.go):
    u8 vsn | 12-byte nonce | GCM ciphertext || 16-byte tag
vsn 1 seals the plaintext as is; vsn 0 (spoken protocol 1) first PKCS#7-pads it to a
multiple of 16 bytes. The version byte and nonce are not part of the additional data.

Keys are ordered, index 0 is the primary: encrypt with the primary only, decrypt by trying
every key in order. Nonces come from the caller (the core never reads randomness); the
driver hands in `os.urandom` bytes from a buffered pool.
"""
from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptError

__all__ = ["Keyring", "validate_key", "encrypted_length", "NONCE_SIZE", "TAG_SIZE",
           "ENCRYPT_OVERHEAD", "MAX_ENCRYPTION_VERSION"]

NONCE_SIZE = 12                 # nonceSize: the standard GCM nonce
TAG_SIZE = 16                   # tagSize
BLOCK_SIZE = 16                 # aes.BlockSize, the PKCS#7 pad unit of vsn 0
ENCRYPT_OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE   # encryptOverhead (vsn 1): 29
MAX_ENCRYPTION_VERSION = 1      # maxEncryptionVersion


def validate_key(key: bytes) -> None:
    """Raise ValueError unless `key` is bytes of an AES key size (16, 24 or 32)."""
    if not isinstance(key, (bytes, bytearray)):
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    if len(key) not in (16, 24, 32):
        raise ValueError("key size must be 16, 24 or 32 bytes")


def encrypted_length(version: int, plain_len: int) -> int:
    """Size of the blob sealing `plain_len` bytes (memberlist `encryptedLength`)."""
    if version >= 1:
        return 1 + NONCE_SIZE + plain_len + TAG_SIZE
    padded = (plain_len // BLOCK_SIZE + 1) * BLOCK_SIZE   # PKCS#7 always adds 1..16 bytes
    return 1 + NONCE_SIZE + padded + TAG_SIZE


class Keyring:
    """memberlist's keyring: index 0 is the primary key; encrypt with it, decrypt with any."""

    __slots__ = ("_keys", "_aeads")

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self._keys: list[bytes] = []
        self._aeads: list[AESGCM] = []
        for key in keys:
            self.add(key)

    @property
    def keys(self) -> list[bytes]:
        """The installed keys, primary first (a copy)."""
        return list(self._keys)

    @property
    def primary(self) -> bytes:
        """The key new messages are encrypted with."""
        return self._keys[0]

    def add(self, key: bytes) -> None:
        """Install `key` after the others; nothing happens if it is installed already."""
        validate_key(key)
        key = bytes(key)
        if key in self._keys:
            return
        self._keys.append(key)
        self._aeads.append(AESGCM(key))

    def use(self, key: bytes) -> None:
        """Make the installed `key` the primary (ValueError if it is not installed)."""
        i = self._index(key)
        self._keys.insert(0, self._keys.pop(i))
        self._aeads.insert(0, self._aeads.pop(i))

    def remove(self, key: bytes) -> None:
        """Uninstall `key`; ValueError for the primary key or a key not installed."""
        i = self._index(key)
        if i == 0:
            raise ValueError("removing the primary key is not allowed")
        del self._keys[i]
        del self._aeads[i]

    def _index(self, key: bytes) -> int:
        try:
            return self._keys.index(bytes(key))
        except ValueError:
            raise ValueError("requested key is not in the keyring") from None

    def encrypt(self, plaintext: Any, nonce: bytes, aad: bytes = b"", version: int = 1) -> bytes:
        """`u8 version | nonce | ciphertext || tag` sealed with the primary key."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
        if version == 0:
            pad = BLOCK_SIZE - len(plaintext) % BLOCK_SIZE
            plaintext = bytes(plaintext) + bytes((pad,)) * pad
        elif version != 1:
            raise ValueError(f"encryption version must be 0 or 1, got {version}")
        sealed = self._aeads[0].encrypt(nonce, plaintext, aad or None)
        return b"".join((bytes((version,)), nonce, sealed))

    def decrypt(self, blob: Any, aad: bytes = b"") -> bytes:
        """The plaintext of a blob sealed by any installed key; DecryptError otherwise.

        Checks and reasons follow memberlist `decryptPayload`; the offset is always 0
        (the start of the blob).
        """
        n = len(blob)
        if n == 0:
            raise DecryptError("Cannot decrypt empty payload", 0)
        version = blob[0]
        if version > MAX_ENCRYPTION_VERSION:
            raise DecryptError(f"Unsupported encryption version {version}", 0)
        if n < encrypted_length(version, 0):
            raise DecryptError(f"Payload is too small to decrypt: {n}", 0)
        with memoryview(blob) as mv:
            nonce = bytes(mv[1:1 + NONCE_SIZE])
            sealed = bytes(mv[1 + NONCE_SIZE:])
        aad = aad or None
        for aead in self._aeads:
            try:
                plain = aead.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
            if version == 0:
                # pkcs7decode: cut as many bytes as the last one says (Go would panic on
                # a count above the length; only a key holder can produce that).
                cut = plain[-1]
                if cut > len(plain):
                    raise DecryptError("invalid PKCS#7 padding", 0)
                plain = plain[:len(plain) - cut]
            return plain
        raise DecryptError("No installed keys could decrypt the message", 0)
