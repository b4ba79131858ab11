-- An agency's suspend, resume or delete queues one operation per client; each names the
-- agency's operation that queued it, so the agency's operations show its cascades.
ALTER TABLE operations ADD COLUMN parent_operation_id uuid REFERENCES operations (id);
CREATE INDEX operations_parent ON operations (parent_operation_id)
    WHERE parent_operation_id IS NOT NULL;
