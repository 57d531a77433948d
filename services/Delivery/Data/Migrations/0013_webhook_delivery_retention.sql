-- Delivered and permanently failed webhook deliveries are deleted after a retention period
-- (WebhookRetention); this index lets it find the oldest finished ones in small batches. A finished
-- delivery's last attempt is the one that finished it (for a delivered one, delivered_at).
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (last_attempt_at) WHERE status <> 'pending';
