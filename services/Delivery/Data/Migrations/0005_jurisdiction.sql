-- The country whose messaging law a workspace's marketing follows. Korea's advertising rules (the "(광고)"
-- form with a free 080 opt-out line, night-time consent between 21:00 and 08:00) apply only to "KR".
-- Existing workspaces were all treated as Korean, so they stay so.
ALTER TABLE delivery_settings ADD COLUMN jurisdiction text NOT NULL DEFAULT 'KR';
