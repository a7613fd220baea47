-- Billing: plan prices, subscriptions per user and provider (Stripe, manual grants),
-- idempotent Stripe events, the effective plan last enforced, follow-up jobs, payments
-- (the revenue report) and the mail outbox.

-- Prices in minor units of their currency (cents for USD; UGX has none): a plan's price
-- is what Checkout charges through its Stripe price (STRIPE_PRICE_BASIC/_PREMIUM).
ALTER TABLE plans RENAME COLUMN price_cents TO amount_minor;
ALTER TABLE plans ADD COLUMN billing_interval text NOT NULL DEFAULT 'month'
    CHECK (billing_interval IN ('month', 'year'));
ALTER TABLE plans ADD CONSTRAINT plans_currency_iso CHECK (currency ~ '^[a-z]{3}$');
UPDATE plans SET amount_minor = 0, currency = 'usd' WHERE id = 'free';
UPDATE plans SET amount_minor = 299, currency = 'usd' WHERE id = 'basic';
UPDATE plans SET amount_minor = 499, currency = 'usd' WHERE id = 'premium';

-- One subscription row per user and provider ('stripe'; 'manual', 'admin' and 'demo'
-- are grants by hand). The effective plan is computed from all of a user's rows
-- (billing.plans.effective_plan), so the old "one live row per user" rule goes.
DROP INDEX subscriptions_one_live_per_user;
DELETE FROM subscriptions s
 USING subscriptions t
 WHERE s.user_id = t.user_id AND s.provider = t.provider
   AND (s.updated_at, s.id) < (t.updated_at, t.id);
CREATE UNIQUE INDEX subscriptions_user_provider ON subscriptions (user_id, provider);
CREATE INDEX subscriptions_status ON subscriptions (status, updated_at DESC);
ALTER TABLE subscriptions
    ADD COLUMN provider_customer_id text,
    -- the creation time of the newest provider event applied to this row: an event
    -- older than it never overwrites the row (webhooks arrive out of order)
    ADD COLUMN provider_updated_at  timestamptz,
    -- when the row became past_due: the plan is kept for KUSH_BILLING_GRACE_HOURS
    ADD COLUMN past_due_since       timestamptz,
    -- a grant by hand ends here (NULL: until revoked)
    ADD COLUMN ends_at              timestamptz,
    ADD COLUMN reason               text;

ALTER TABLE stripe_events ADD COLUMN outcome text;

-- The effective plan as last enforced (live sessions above it ended); recheck_at is
-- when it changes by time alone (a grace period or a grant running out).
CREATE TABLE entitlements (
    user_id    uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    plan_id    text NOT NULL REFERENCES plans (id),
    recheck_at timestamptz,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX entitlements_recheck ON entitlements (recheck_at) WHERE recheck_at IS NOT NULL;

-- Work a webhook leaves for after its commit: enforcing a plan change on live
-- sessions (done at once by the webhook itself; this row is the retry if it could not)
-- and re-reading a subscription from Stripe when event order leaves a doubt.
CREATE TABLE billing_jobs (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('enforce_plan', 'refresh_subscription')),
    user_id      uuid REFERENCES users (id) ON DELETE CASCADE,
    ref          text,
    run_after    timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    locked_until timestamptz,
    done_at      timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_jobs_due ON billing_jobs (run_after) WHERE done_at IS NULL;

-- Paid invoices: what the revenue report adds up (one row per provider invoice).
CREATE TABLE payments (
    id                  bigserial PRIMARY KEY,
    provider            text NOT NULL DEFAULT 'stripe',
    provider_invoice_id text NOT NULL UNIQUE,
    user_id             uuid REFERENCES users (id) ON DELETE SET NULL,
    plan_id             text REFERENCES plans (id),
    amount_minor        bigint NOT NULL CHECK (amount_minor >= 0),
    currency            text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    paid_at             timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_paid_at ON payments (paid_at);

-- Mail written in the same transaction as the event that causes it; `kush worker`
-- delivers it (SMTP, or the log without KUSH_SMTP_URL), retrying with backoff.
CREATE TABLE mail_outbox (
    id              bigserial PRIMARY KEY,
    user_id         uuid REFERENCES users (id) ON DELETE CASCADE,
    template        text NOT NULL CHECK (template IN ('welcome', 'payment_succeeded',
                        'payment_failed', 'subscription_ending', 'subscription_ended')),
    to_address      text NOT NULL,
    data            jsonb NOT NULL DEFAULT '{}',
    dedup_key       text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    sent_at         timestamptz,
    sent_via        text,
    failed_at       timestamptz,
    last_error      text
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
