-- Online moves replicate tenant databases logically, which carries updates and deletes only of
-- tables with a primary key or a replica identity. alert_rule_scopes has no key: its rows are
-- identified by all their columns (a small table of integers).
ALTER TABLE alert_rule_scopes REPLICA IDENTITY FULL;
