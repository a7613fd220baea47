-- Offline downloads (premium, issue 15).
--
-- The ingest writes one progressive MP4 (H.264 + AAC, 480p, "faststart") per film
-- version next to the HLS ladder; the film row points at it like it points at its master
-- playlist, so a re-ingest switches both in one transaction.
ALTER TABLE movies
    ADD COLUMN download_key   text,
    ADD COLUMN download_bytes bigint CHECK (download_bytes IS NULL OR download_bytes > 0);

-- One row per film a viewer took offline. Asking again for the same film while the row
-- is live refreshes it (a new short-lived URL, the current period end) rather than
-- adding rows. `expires_at`: the offline copy may be played until then (the end of the
-- subscription's current period, or of its grace or grant). `revoked_at`: the plan no
-- longer includes downloads (a downgrade, a payment failed past its grace): the
-- gateway's download URLs of this row are refused from then on.
CREATE TABLE downloads (
    id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{16}$'),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    movie_id        uuid NOT NULL REFERENCES movies (id) ON DELETE CASCADE,
    -- the size of the MP4 when the download was last issued
    bytes           bigint NOT NULL CHECK (bytes > 0),
    -- bytes counted against the viewer's data use: what the gateway's file route sent
    -- (Content-Length of its 200/206 answers), or the file's size for each presigned
    -- origin URL issued (the origin's transfers are not seen by us)
    bytes_delivered bigint NOT NULL DEFAULT 0 CHECK (bytes_delivered >= 0),
    delivery        text NOT NULL CHECK (delivery IN ('gateway', 'presigned')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    issued_at       timestamptz NOT NULL DEFAULT now(),
    url_expires_at  timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoked_reason  text
);
CREATE UNIQUE INDEX downloads_one_live ON downloads (user_id, movie_id)
    WHERE revoked_at IS NULL;
CREATE INDEX downloads_user ON downloads (user_id, created_at DESC);

-- Every delivery of download bytes, for data use over a time window (`GET /v1/me/usage`
-- sums `bytes` per film between `from` and `to`): one row per file request the gateway
-- answered, or per presigned URL issued. A download is a few requests, not a segment
-- stream, so a row each is cheap.
CREATE TABLE download_deliveries (
    id          bigserial PRIMARY KEY,
    download_id text NOT NULL REFERENCES downloads (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    movie_id    uuid NOT NULL REFERENCES movies (id) ON DELETE CASCADE,
    bytes       bigint NOT NULL CHECK (bytes >= 0),
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX download_deliveries_user_at ON download_deliveries (user_id, at);
