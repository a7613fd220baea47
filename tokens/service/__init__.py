"""The auth service built on the pure token library: HTTP views, accounts in PostgreSQL,
signing keys at rest, playback sessions and revocations in Redis."""
