-- Playback sessions survive the loss of Redis (issue 10).
--
-- state:     the session exactly as Redis stores it (PlaybackSession.to_bytes), so a
--            gateway that misses it in Redis (restart without persistence, failover,
--            flush) rebuilds it from here; NULL for sessions started before this release.
-- family_id: the login (refresh family) it was started under, so a revocation ends the
--            family's sessions in the same transaction that revokes the family.
ALTER TABLE playback_sessions ADD COLUMN state bytea;
ALTER TABLE playback_sessions ADD COLUMN family_id uuid;
CREATE INDEX playback_sessions_family ON playback_sessions (family_id)
    WHERE family_id IS NOT NULL;

-- ``kush worker`` follows what was revoked or ended recently and mirrors it into Redis
-- (a revocation whose Redis write failed is applied there within seconds).
CREATE INDEX playback_sessions_ended ON playback_sessions (ended_at)
    WHERE ended_at IS NOT NULL;
CREATE INDEX revoked_tokens_revoked ON revoked_tokens (revoked_at);
CREATE INDEX refresh_families_revoked ON refresh_families (revoked_at)
    WHERE revoked_at IS NOT NULL;
