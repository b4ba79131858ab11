-- Cancelling a move before its switch (an operator's cancel, or a suspension or deletion that
-- preempts it): the worker abandons the move at its next check, then queues what preempted it.
ALTER TABLE tenant_moves
    ADD COLUMN cancel_requested_at timestamptz,
    ADD COLUMN cancelled_by text,
    ADD COLUMN cancel_then text CHECK (cancel_then IN ('suspend', 'deprovision'));
