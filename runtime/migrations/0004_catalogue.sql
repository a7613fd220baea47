-- Catalogue, people and law (issue 11).
--
-- Films: besides draft/processing/published, a film can be `unpublished` (taken off the
-- catalogue by an editor or moderator, can be published again) or `taken_down` (a legal
-- or policy removal by an admin; the reason is kept here and in the audit log).
ALTER TABLE movies DROP CONSTRAINT IF EXISTS movies_status_check;
ALTER TABLE movies ADD CONSTRAINT movies_status_check
    CHECK (status IN ('draft', 'processing', 'published', 'unpublished', 'taken_down',
                      'archived'));
ALTER TABLE movies ADD COLUMN taken_down_at timestamptz;
ALTER TABLE movies ADD COLUMN takedown_reason text;
-- the admin listing pages newest first
CREATE INDEX movies_created ON movies (created_at DESC, id DESC);

-- Viewer profile: a display name; the birth year (existing column) is set once.
-- erased_at: the account was erased on request (GDPR); the row stays, anonymised, so
-- billing records and reports keep their references.
ALTER TABLE users ADD COLUMN display_name text
    CHECK (display_name IS NULL OR length(display_name) BETWEEN 1 AND 80);
ALTER TABLE users ADD COLUMN erased_at timestamptz;

-- Trending and the views report read playback starts by time; ending a film's live
-- sessions (unpublish, takedown) finds them by film.
CREATE INDEX playback_sessions_started ON playback_sessions (created_at);
CREATE INDEX playback_sessions_movie_live ON playback_sessions (movie_id)
    WHERE ended_at IS NULL;

-- The audit listing filters by who did it and what it was done to.
CREATE INDEX audit_log_actor ON audit_log (actor_id, id DESC);
CREATE INDEX audit_log_target ON audit_log (target_id, id DESC);
