-- +goose Up
-- What a batch decision did to each item it was shown, as
-- [{request_id, outcome, note}]: the outcome page lists every item, and an
-- item left out leaves the batch (its batch_id is cleared), so only this
-- remembers it. Decisions made before this column read '[]'.
ALTER TABLE batch_decisions ADD COLUMN items jsonb NOT NULL DEFAULT '[]';

-- +goose Down
ALTER TABLE batch_decisions DROP COLUMN items;
