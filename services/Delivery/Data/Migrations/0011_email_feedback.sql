-- Where a workspace's email bounces and complaints may come from: the Amazon SNS topics it subscribed to the
-- platform's endpoint (a notification signed by AWS for any other topic is refused), and the whsec_ secret of
-- its generic bounce webhook, sealed with Delivery:SecretKey.
CREATE TABLE email_feedback_settings (
    tenant_id      text NOT NULL PRIMARY KEY,
    sns_topic_arns text[] NOT NULL DEFAULT '{}',
    webhook_secret bytea,
    updated_at     timestamptz NOT NULL
);
