"""Fuzzers of the chat server: `fuzz.parsers` (atheris, in-process) and
`fuzz.protocol` (mutated HTTP and WebSocket input to a running server)."""
