"""Byte mutations for the protocol fuzzer: a seed in, a mutated copy out."""

# Pieces that tend to reach edge cases of HTTP, queries and JSON.
TOKENS = [b"\r\n", b"\r\n\r\n", b"\n", b"\x00", b"%", b"%ff", b"%C3%28", b"%00", b"&", b"=",
          b"&user=", b"&room=", b"&lastReceived=", b"&token=", b"?", b"/", b"..", b" ",
          b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\"", b"{", b"}", b"[", b"]", b"null",
          b"99999999999999999999999", b"-1", b"1e400", b"Content-Length: 0\r\n",
          b"Content-Length: -1\r\n", b"Transfer-Encoding: chunked\r\n", b"Expect: 100-continue\r\n",
          b"Content-Type: application/json\r\n", b"Last-Event-ID: x\r\n",
          b"Authorization: Bearer x\r\n", b"Origin: http://evil\r\n", b"HTTP/1.0", b"HTTP/9.9"]


def mutate(seed, rng, max_size=20000):
    """seed with 1 to 4 random mutations: bytes flipped, inserted, deleted, repeated."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        MUTATIONS[rng.randrange(len(MUTATIONS))](data, rng)
    return bytes(data[:max_size])


def _flip(data, rng):
    if data:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)


def _random_byte(data, rng):
    if data:
        data[rng.randrange(len(data))] = rng.randrange(256)


def _insert_token(data, rng):
    at = rng.randint(0, len(data))
    data[at:at] = rng.choice(TOKENS)


def _delete(data, rng):
    if data:
        at = rng.randrange(len(data))
        del data[at:at + rng.randint(1, 16)]


def _repeat(data, rng):
    if data:
        at = rng.randrange(len(data))
        chunk = data[at:at + rng.randint(1, 32)]
        data[at:at] = chunk * rng.choice([2, 10, 500])


MUTATIONS = [_flip, _random_byte, _insert_token, _delete, _repeat]

