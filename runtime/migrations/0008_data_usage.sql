-- Data metering and the data saver (issue 15, "Data").
--
-- data_usage: bytes delivered to one playback session on one UTC day, summed. Gateway
--   workers add to it in batches every few seconds (gateway/metering.py), never once per
--   segment; `edge_bytes` is the part the nginx edge reported for segments it served
--   (from its cache or not), included in `bytes`.
CREATE TABLE data_usage (
    session_id text NOT NULL,
    day        date NOT NULL,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    movie_id   uuid NOT NULL REFERENCES movies (id) ON DELETE CASCADE,
    bytes      bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    edge_bytes bigint NOT NULL DEFAULT 0 CHECK (edge_bytes >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, day)
);
CREATE INDEX data_usage_user_day ON data_usage (user_id, day);
CREATE INDEX data_usage_day ON data_usage (day);

-- The viewer's data-saver setting (PATCH /v1/me {"data_saver": true}).
ALTER TABLE users ADD COLUMN data_saver boolean NOT NULL DEFAULT false;
