-- +goose Up
-- An edit is judged by the policy again: the decision keeps the rule the
-- edited action fell under, the policy version that said so, and the hash of
-- the edited action, next to the original rule and hash. NULL when the
-- verdict was not an edit.
ALTER TABLE decisions
    ADD COLUMN edited_rule           text,
    ADD COLUMN edited_policy_version integer,
    ADD COLUMN edited_payload_hash   text;

-- +goose Down
ALTER TABLE decisions
    DROP COLUMN edited_rule,
    DROP COLUMN edited_policy_version,
    DROP COLUMN edited_payload_hash;
