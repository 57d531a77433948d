-- Channels a provider reported as unable to take messages (Twilio 21610 unsubscribed, 21211 invalid,
-- SMTP 550): {"sms": {"reason": "...", "since": "..."}}. Cleared when the address changes.
ALTER TABLE contacts ADD COLUMN unreachable jsonb NOT NULL DEFAULT '{}';
