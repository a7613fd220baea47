-- Kush Films edge: initial schema. PostgreSQL is the source of truth; Redis only holds
-- what can be rebuilt or may expire. Tables are created in the connection's search_path
-- so a test run can use a schema of its own.

CREATE TABLE plans (
    id              text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9_]{0,31}$'),
    name            text NOT NULL,
    price_cents     integer NOT NULL CHECK (price_cents >= 0),
    currency        text NOT NULL DEFAULT 'usd',
    max_height      integer NOT NULL CHECK (max_height > 0),
    max_streams     integer NOT NULL CHECK (max_streams > 0),
    ads             boolean NOT NULL,
    downloads       boolean NOT NULL,
    stripe_price_id text UNIQUE,
    rank            integer NOT NULL DEFAULT 0
);

INSERT INTO plans (id, name, price_cents, max_height, max_streams, ads, downloads, rank) VALUES
    ('free',    'Free',    0,   480,  1, true,  false, 0),
    ('basic',   'Basic',   299, 720,  1, false, false, 1),
    ('premium', 'Premium', 499, 1080, 3, false, true,  2);

CREATE TABLE users (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email              text NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
    password_hash      text NOT NULL,
    role               text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin', 'moderator')),
    birth_year         integer CHECK (birth_year BETWEEN 1900 AND 2100),
    country            text CHECK (country ~ '^[A-Z]{2}$'),
    stripe_customer_id text UNIQUE,
    created_at         timestamptz NOT NULL DEFAULT now(),
    disabled_at        timestamptz
);

-- A user's plan is the plan of their live subscription, or 'free' without one.
CREATE TABLE subscriptions (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan_id                  text NOT NULL REFERENCES plans (id),
    status                   text NOT NULL CHECK (status IN ('active', 'trialing', 'past_due',
                                 'canceled', 'incomplete', 'incomplete_expired', 'unpaid', 'paused')),
    provider                 text NOT NULL DEFAULT 'manual',
    provider_subscription_id text UNIQUE,
    current_period_end       timestamptz,
    cancel_at_period_end     boolean NOT NULL DEFAULT false,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX subscriptions_one_live_per_user ON subscriptions (user_id)
    WHERE status IN ('active', 'trialing', 'past_due');

-- Refresh tokens rotate on every use; presenting a used one revokes its whole family.
CREATE TABLE refresh_families (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client         text NOT NULL DEFAULT 'api',
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);

CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    family_id  uuid NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Access-token revocations; Redis holds the fast path, this table survives a Redis restart.
CREATE TABLE revoked_tokens (
    jti        text PRIMARY KEY,
    user_id    uuid REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);

-- Signing keys: JWT (Ed25519) and segment-token secrets, private parts sealed with the
-- master key. A retired key still verifies until retire_after, then leaves the JWKS.
CREATE TABLE signing_keys (
    kid            text PRIMARY KEY,
    purpose        text NOT NULL CHECK (purpose IN ('jwt', 'segment')),
    algorithm      text NOT NULL,
    public_key     bytea,
    sealed_secret  bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz,
    verify_until   timestamptz
);
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (purpose) WHERE retired_at IS NULL;

CREATE TABLE categories (
    id   serial PRIMARY KEY,
    slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,63}$'),
    name text NOT NULL
);

CREATE TABLE movies (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug         text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,127}$'),
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    description  text NOT NULL DEFAULT '',
    year         integer,
    duration_s   double precision NOT NULL DEFAULT 0,
    min_age      integer NOT NULL DEFAULT 0 CHECK (min_age BETWEEN 0 AND 21),
    rating       text NOT NULL DEFAULT 'G',
    geo_allow    text[],             -- NULL: everywhere; else only these ISO countries
    geo_block    text[] NOT NULL DEFAULT '{}',
    status       text NOT NULL DEFAULT 'draft'
                     CHECK (status IN ('draft', 'processing', 'published', 'archived')),
    version      integer NOT NULL DEFAULT 1,  -- bumped on re-ingest: invalidates cached templates
    poster_key   text,
    master_key   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    search       tsvector GENERATED ALWAYS AS (
                     to_tsvector('simple', title || ' ' || description)) STORED
);
CREATE INDEX movies_search ON movies USING gin (search);
CREATE INDEX movies_published ON movies (published_at DESC, id) WHERE status = 'published';

CREATE TABLE movie_categories (
    movie_id    uuid NOT NULL REFERENCES movies (id) ON DELETE CASCADE,
    category_id integer NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    PRIMARY KEY (movie_id, category_id)
);

CREATE TABLE renditions (
    movie_id      uuid NOT NULL REFERENCES movies (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    width         integer,
    height        integer,
    bandwidth     integer NOT NULL,
    codecs        text,
    segment_count integer NOT NULL DEFAULT 0,
    PRIMARY KEY (movie_id, name)
);

-- Playback sessions live in Redis with a TTL; this is their audit record.
CREATE TABLE playback_sessions (
    id           text PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    movie_id     uuid NOT NULL REFERENCES movies (id) ON DELETE CASCADE,
    plan_id      text NOT NULL,
    renditions   text[] NOT NULL,
    ad_plan      jsonb,
    client_ip    text,
    user_agent   text,
    country      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    ended_reason text
);
CREATE INDEX playback_sessions_user ON playback_sessions (user_id, created_at DESC);

CREATE TABLE watch_progress (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    movie_id   uuid NOT NULL REFERENCES movies (id) ON DELETE CASCADE,
    position_s double precision NOT NULL CHECK (position_s >= 0),
    duration_s double precision,
    completed  boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, movie_id)
);
CREATE INDEX watch_progress_recent ON watch_progress (user_id, updated_at DESC);

-- Ads: creatives (video ads in the same HLS ladder), campaigns, break policies, events.
CREATE TABLE ads (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    advertiser  text NOT NULL DEFAULT '',
    kind        text NOT NULL DEFAULT 'video' CHECK (kind IN ('video', 'banner')),
    duration_s  double precision NOT NULL DEFAULT 0,
    status      text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'processing', 'ready', 'archived')),
    master_key  text,
    click_url   text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaigns (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                  text NOT NULL,
    advertiser            text NOT NULL DEFAULT '',
    starts_at             timestamptz NOT NULL,
    ends_at               timestamptz NOT NULL CHECK (ends_at > starts_at),
    weight                integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
    target_countries      text[],
    target_categories     text[],
    target_plans          text[],
    daily_cap             integer,
    total_cap             integer,
    frequency_cap_per_day integer,
    status                text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'ended')),
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaign_ads (
    campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    ad_id       uuid NOT NULL REFERENCES ads (id) ON DELETE CASCADE,
    PRIMARY KEY (campaign_id, ad_id)
);

CREATE TABLE break_policies (
    id              serial PRIMARY KEY,
    movie_id        uuid UNIQUE REFERENCES movies (id) ON DELETE CASCADE,  -- NULL: the default
    preroll         boolean NOT NULL DEFAULT true,
    midroll_every_s integer CHECK (midroll_every_s IS NULL OR midroll_every_s >= 60),
    use_cue_points  boolean NOT NULL DEFAULT true,
    postroll        boolean NOT NULL DEFAULT false,
    max_pod_s       integer NOT NULL DEFAULT 60,
    max_ads_per_pod integer NOT NULL DEFAULT 2
);
CREATE UNIQUE INDEX break_policies_one_default ON break_policies ((movie_id IS NULL)) WHERE movie_id IS NULL;

CREATE TABLE ad_events (
    id          bigserial PRIMARY KEY,
    session_id  text NOT NULL,
    ad_id       uuid NOT NULL,
    campaign_id uuid,
    pod_index   integer NOT NULL DEFAULT 0,
    event       text NOT NULL CHECK (event IN ('impression', 'confirmed_impression', 'first_quartile',
                    'midpoint', 'third_quartile', 'complete')),
    occurred_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, ad_id, pod_index, event)
);
CREATE INDEX ad_events_report ON ad_events (campaign_id, occurred_at);

CREATE TABLE ingest_jobs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    movie_id    uuid REFERENCES movies (id) ON DELETE CASCADE,
    ad_id       uuid REFERENCES ads (id) ON DELETE CASCADE,
    source_key  text NOT NULL,
    status      text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    progress    real NOT NULL DEFAULT 0,
    attempts    integer NOT NULL DEFAULT 0,
    error       text,
    locked_by   text,
    locked_at   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX ingest_jobs_queue ON ingest_jobs (created_at) WHERE status = 'queued';

-- Stripe events are processed idempotently: the event id is unique.
CREATE TABLE stripe_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    error        text
);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid,
    action      text NOT NULL,
    target_type text,
    target_id   text,
    details     jsonb NOT NULL DEFAULT '{}',
    request_id  text
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
