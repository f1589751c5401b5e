"""WebSocket frames for the protocol fuzzer: valid ones, and ones wrong in one field or more."""

import struct

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 1, 2, 8, 9, 10, 0
PAYLOADS = [b"hello", "h\u00e9llo \u263a".encode(), b"\xc3\x28", b"\xed\xa0\x80", b"\xff",
            b"   ", b"", b"\x00", b"\x03\xe8", b"\x03\xe8bye", b"x" * 70000]


def frame(payload, opcode=TEXT, fin=True, rsv=0, mask=b"\x01\x02\x03\x04", length=None):
    """One frame; `length` overrides the payload's true length, `mask=None` leaves it unmasked."""
    length = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 15)])
    masked = 0x80 if mask is not None else 0
    if length < 126:
        head += bytes([masked | length])
    elif length < 1 << 16:
        head += bytes([masked | 126]) + struct.pack("!H", length)
    else:
        head += bytes([masked | 127]) + struct.pack("!Q", length & (2 ** 64 - 1))
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def random_frames(rng):
    """1 to 4 frames, each valid or wrong in its opcode, flags, length, mask or text.

    Returns (the bytes, the texts the server may post from them): a complete
    text frame's payload, or a fragmented message's whole, when valid UTF-8.
    """
    out, texts, fragments = b"", set(), []
    for _ in range(rng.randint(1, 4)):
        payload = rng.choice(PAYLOADS) if rng.random() < 0.7 else rng.randbytes(rng.randint(0, 64))
        opcode = rng.choice([TEXT, TEXT, TEXT, CONTINUATION, BINARY, CLOSE, PING, PONG,
                             rng.randrange(16)])
        fin = rng.random() < 0.8
        rsv = 0 if rng.random() < 0.9 else rng.randrange(8)
        mask = b"\x01\x02\x03\x04" if rng.random() < 0.9 else None
        length = None if rng.random() < 0.9 else rng.choice([0, 125, 126, 65535, 2 ** 63, 2 ** 64 - 1])
        out += frame(payload, opcode, fin, rsv, mask, length)
        if opcode in (TEXT, CONTINUATION):
            read = payload if length is None else payload[:length]  # a shorter length is obeyed
            fragments = [read] if opcode == TEXT else fragments + [read]
            texts.update(_texts(fragments))
    return out, texts


def _texts(fragments):
    """What a message of these fragments could read as (trimmed), if it is valid UTF-8."""
    texts = set()
    for start in range(len(fragments)):
        try:
            texts.add(b"".join(fragments[start:]).decode("utf-8").strip())
        except UnicodeDecodeError:
            pass
    return texts
