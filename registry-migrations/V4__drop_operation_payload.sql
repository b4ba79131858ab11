-- Operations never carried a payload (every kind reads what it needs from its tenant): the
-- column was always '{}'.
ALTER TABLE operations DROP COLUMN payload;
