"""memberlist's keyring and AES-GCM payloads (`_core.keyring`, spec §2)."""
from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from _core.errors import DecodeError, DecryptError
from _core.keyring import ENCRYPT_OVERHEAD, Keyring, encrypted_length, validate_key

VECTORS = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                       "shared", "vectors", "serf"))
SERF_KEY = base64.b64decode("Xq6k3tUGAF0Dj8Y1zq8cHq8Bp6QmKxKpxvWJ9wX2f+Y=")  # vectors README

K16, K24, K32 = b"\x01" * 16, b"\x02" * 24, b"\x03" * 32
NONCE = bytes(range(12))


def vector(name: str) -> bytes:
    with open(os.path.join(VECTORS, name + ".hex")) as f:
        return bytes.fromhex(f.read().strip())


@pytest.mark.parametrize("key", [K16, K24, K32])
def test_v1_round_trip_and_layout(key):
    ring = Keyring([key])
    blob = ring.encrypt(b"hello", NONCE)
    assert blob[0] == 1 and blob[1:13] == NONCE
    assert len(blob) == encrypted_length(1, 5) == 5 + ENCRYPT_OVERHEAD
    # the body is exactly Go's gcm.Seal(nonce, plaintext, aad): ciphertext || tag
    assert blob[13:] == AESGCM(key).encrypt(NONCE, b"hello", None)
    assert ring.decrypt(blob) == b"hello"


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 31, 32, 100])
def test_v0_is_pkcs7_padded(n):
    ring = Keyring([K32])
    plain = (b"abc" * 40)[:n]
    blob = ring.encrypt(plain, NONCE, version=0)
    assert blob[0] == 0
    pad = 16 - n % 16                       # 1..16 bytes, always added
    assert len(blob) == encrypted_length(0, n) == 1 + 12 + n + pad + 16
    inner = AESGCM(K32).decrypt(NONCE, blob[13:], None)
    assert inner == plain + bytes((pad,)) * pad
    assert ring.decrypt(blob) == plain


def test_aad_must_match():
    ring = Keyring([K16])
    blob = ring.encrypt(b"data", NONCE, aad=b"label")
    assert ring.decrypt(blob, aad=b"label") == b"data"
    for wrong in (b"", b"labe", b"other"):
        with pytest.raises(DecryptError, match="No installed keys"):
            ring.decrypt(blob, aad=wrong)
    plain_blob = ring.encrypt(b"data", NONCE)          # empty AAD = none at all (Go nil)
    assert AESGCM(K16).decrypt(NONCE, plain_blob[13:], b"") == b"data"


@pytest.mark.parametrize("bad", [b"", b"x" * 15, b"x" * 17, b"x" * 33, b"x" * 64])
def test_key_sizes(bad):
    with pytest.raises(ValueError, match="key size must be 16, 24 or 32 bytes"):
        validate_key(bad)
    with pytest.raises(ValueError):
        Keyring([bad])
    for good in (K16, K24, K32):
        validate_key(good)


def test_key_type_and_empty_ring():
    with pytest.raises(TypeError):
        validate_key("0123456789abcdef")
    with pytest.raises(ValueError):
        Keyring([])


def test_rotation_semantics():
    ring = Keyring([K16, K24])
    assert ring.primary == K16 and ring.keys == [K16, K24]
    ring.add(K24)                                        # already installed: no-op
    assert ring.keys == [K16, K24]
    ring.add(K32)                                        # appended after the others
    assert ring.keys == [K16, K24, K32]
    old = ring.encrypt(b"m", NONCE)
    ring.use(K32)
    assert ring.primary == K32 and ring.keys == [K32, K16, K24]
    new = ring.encrypt(b"m", NONCE)
    assert new != old and AESGCM(K32).decrypt(NONCE, new[13:], None) == b"m"
    assert ring.decrypt(old) == b"m"                     # any installed key decrypts
    with pytest.raises(ValueError, match="primary"):
        ring.remove(K32)
    with pytest.raises(ValueError, match="not in the keyring"):
        ring.remove(b"\x09" * 16)
    with pytest.raises(ValueError, match="not in the keyring"):
        ring.use(b"\x09" * 16)
    ring.remove(K16)
    assert ring.keys == [K32, K24]
    with pytest.raises(DecryptError, match="No installed keys could decrypt the message"):
        ring.decrypt(old)
    keys = ring.keys
    keys.append(K16)                                     # a copy
    assert ring.keys == [K32, K24]


def test_wrong_key():
    blob = Keyring([K16]).encrypt(b"secret", NONCE)
    with pytest.raises(DecryptError) as info:
        Keyring([K24, K32]).decrypt(blob)
    assert info.value.reason == "No installed keys could decrypt the message"
    assert isinstance(info.value, DecodeError) and info.value.offset == 0


@pytest.mark.parametrize("blob,reason", [
    (b"", "Cannot decrypt empty payload"),
    (b"\x02" + b"\x00" * 40, "Unsupported encryption version 2"),
    (b"\x01" + b"\x00" * 27, "Payload is too small to decrypt: 28"),
    (b"\x00" + b"\x00" * 43, "Payload is too small to decrypt: 44"),
    (b"\x01" + b"\x00" * 28, "No installed keys could decrypt the message"),
])
def test_bad_blobs(blob, reason):
    with pytest.raises(DecryptError) as info:
        Keyring([K16]).decrypt(blob)
    assert info.value.reason == reason


def test_empty_plaintext_v1_is_29_bytes():
    ring = Keyring([K16])
    blob = ring.encrypt(b"", NONCE)
    assert len(blob) == 29 and ring.decrypt(blob) == b""


def test_nonce_and_version_checked():
    ring = Keyring([K16])
    with pytest.raises(ValueError):
        ring.encrypt(b"x", b"short")
    with pytest.raises(ValueError):
        ring.encrypt(b"x", NONCE, version=2)


def test_v0_bad_padding_is_a_decrypt_error():
    # only a key holder can produce this; Go would panic slicing
    sealed = AESGCM(K16).encrypt(NONCE, b"\x00" * 15 + b"\x20", None)
    with pytest.raises(DecryptError, match="padding"):
        Keyring([K16]).decrypt(b"\x00" + NONCE + sealed)


def test_memoryview_input():
    ring = Keyring([K16])
    blob = ring.encrypt(memoryview(b"abc"), NONCE)
    assert ring.decrypt(memoryview(b"xx" + blob)[2:]) == b"abc"


@pytest.mark.parametrize("name,aad_len,first", [
    ("aes-udp-ping", 0, 0x00),          # a ping, uncompressed
    ("aes-udp-ack", 0, 0x09),           # a compressed ack
    ("aes-tcp-pushpull-join-request", 5, 0x09),
    ("aes-tcp-pushpull-join-response", 5, 0x09),
])
def test_captured_serf_vectors_decrypt(name, aad_len, first):
    data = vector(name)
    ring = Keyring([K16, SERF_KEY])                      # not the primary: tried in order
    if aad_len:                                          # stream: 0a | u32 len | blob
        assert int.from_bytes(data[1:5], "big") == len(data) - 5
        plain = ring.decrypt(data[5:], aad=data[:5])
        with pytest.raises(DecryptError):
            ring.decrypt(data[5:])                       # the header is authenticated
    else:
        plain = ring.decrypt(data)
    assert plain[0] == first
    blob = data[aad_len:]
    again = Keyring([SERF_KEY]).encrypt(plain, blob[1:13], aad=data[:aad_len])
    assert again == blob                                 # deterministic given the nonce
