-- Mobile money (MTN MoMo, Airtel Money): day and week passes next to the monthly plans,
-- payments by request-to-pay, the periods they buy, and provisional access while a
-- payment is pending (README "Mobile money").

-- A row of `plans` is a plan (what playback enforces) or a pass (a product that gives a
-- plan for a fixed number of days). `amount_ugx` is the price by mobile money in whole
-- shillings (NULL: not sold by mobile money); `period_days` is what one payment buys.
ALTER TABLE plans
    ADD COLUMN kind        text NOT NULL DEFAULT 'plan' CHECK (kind IN ('plan', 'pass')),
    ADD COLUMN grants_plan text REFERENCES plans (id),
    ADD COLUMN period_days integer CHECK (period_days > 0),
    ADD COLUMN amount_ugx  integer CHECK (amount_ugx > 0);
ALTER TABLE plans DROP CONSTRAINT IF EXISTS plans_billing_interval_check;
ALTER TABLE plans ADD CONSTRAINT plans_billing_interval_check
    CHECK (billing_interval IN ('day', 'week', 'month', 'year'));
ALTER TABLE plans ADD CONSTRAINT plans_pass_grants
    CHECK ((kind = 'pass') = (grants_plan IS NOT NULL AND period_days IS NOT NULL
                              AND amount_ugx IS NOT NULL));
UPDATE plans SET period_days = 30, amount_ugx = 10000 WHERE id = 'basic';
UPDATE plans SET period_days = 30, amount_ugx = 18000 WHERE id = 'premium';
-- a pass row carries the limits of the plan it gives (playback reads the plan's own)
INSERT INTO plans (id, name, amount_minor, currency, max_height, max_streams, ads, downloads,
                   rank, billing_interval, kind, grants_plan, period_days, amount_ugx)
SELECT v.id, v.name, v.amount, 'ugx', p.max_height, p.max_streams, p.ads, p.downloads,
       p.rank, v.interval, 'pass', p.id, v.days, v.amount
  FROM (VALUES ('day_pass', 'Day pass', 1000, 'day', 1),
               ('week_pass', 'Week pass', 5000, 'week', 7)) AS v (id, name, amount, interval, days),
       plans p
 WHERE p.id = 'premium';

-- One request-to-pay. `id` is the reference we issue (MTN's X-Reference-Id, Airtel's
-- transaction id). Status only moves forward: pending -> successful | failed | expired,
-- and a late success still wins over `expired` (the money was taken).
CREATE TABLE mobile_money_payments (
    id                     uuid PRIMARY KEY,
    user_id                uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider               text NOT NULL CHECK (provider IN ('mtn', 'airtel')),
    product                text NOT NULL REFERENCES plans (id),
    plan_id                text NOT NULL REFERENCES plans (id),
    period_days            integer NOT NULL CHECK (period_days > 0),
    -- the paying number in E.164; NULL once the account is erased (GDPR art. 17)
    msisdn                 text CHECK (msisdn ~ '^\+256[0-9]{9}$'),
    amount_ugx             integer NOT NULL CHECK (amount_ugx > 0),
    status                 text NOT NULL DEFAULT 'pending'
                               CHECK (status IN ('pending', 'successful', 'failed', 'expired')),
    reason                 text,
    provider_transaction_id text,
    -- provisional access while pending (NULL: none, the day's grant was used)
    provisional_until      timestamptz,
    expires_at             timestamptz NOT NULL,
    next_check_at          timestamptz NOT NULL DEFAULT now(),
    checks                 integer NOT NULL DEFAULT 0,
    callbacks              integer NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    settled_at             timestamptz
);
CREATE INDEX mobile_money_payments_user ON mobile_money_payments (user_id, created_at DESC);
CREATE INDEX mobile_money_payments_open ON mobile_money_payments (next_check_at)
    WHERE status = 'pending';

-- What confirmed payments bought: a plan from starts_at to ends_at. Passes stack: a new
-- period starts when the user's last paid period ends.
CREATE TABLE access_periods (
    id         bigserial PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan_id    text NOT NULL REFERENCES plans (id),
    product    text NOT NULL REFERENCES plans (id),
    payment_id uuid NOT NULL UNIQUE REFERENCES mobile_money_payments (id) ON DELETE CASCADE,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL CHECK (ends_at > starts_at),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_periods_user ON access_periods (user_id, ends_at DESC);
