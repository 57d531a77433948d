-- Fallback as one message: the channels still to try, in order, when the current one cannot reach the
-- contact (KakaoTalk "not a user" / blocked): the message moves to the next channel and keeps its timeline.
-- Template messages (KakaoTalk AlimTalk): the provider's approved template and the values of its variables.
ALTER TABLE messages
    ADD COLUMN fallback            text[] NOT NULL DEFAULT '{}',
    ADD COLUMN template_code       text,
    ADD COLUMN template_parameters jsonb;
