-- Campaigns can target regions within a country (the CDN's region header, e.g.
-- CF-Region: "Central Region"), beside countries.
ALTER TABLE campaigns ADD COLUMN target_regions text[];
ALTER TABLE playback_sessions ADD COLUMN region text;
