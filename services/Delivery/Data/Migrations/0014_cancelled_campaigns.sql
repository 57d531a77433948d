-- Campaigns withdrawn with CancelMessages: a DeliverMessage of one still on the bus when the campaign was
-- cancelled is suppressed on arrival ("cancelled: <reason>"), so a cancel stops what the fan-out had
-- already handed over, not only what was waiting here.
CREATE TABLE cancelled_campaigns (
    tenant_id    text        NOT NULL,
    campaign_id  text        NOT NULL,
    reason       text        NOT NULL,
    cancelled_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id)
);
