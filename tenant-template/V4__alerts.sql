-- Alerts: rules over device metrics, the alerts they raise, and who hears about them.
CREATE TYPE alert_severity AS ENUM ('info', 'warning', 'critical');
CREATE TYPE alert_state AS ENUM ('firing', 'acknowledged', 'resolved');
CREATE TYPE channel_kind AS ENUM ('email', 'sms', 'webhook', 'chat');

CREATE TABLE alert_rules (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    metric      text NOT NULL CHECK (metric IN ('cpu', 'memory', 'disk', 'offline')),
    threshold   real NOT NULL,
    for_seconds integer NOT NULL DEFAULT 300,
    severity    alert_severity NOT NULL DEFAULT 'warning',
    enabled     boolean NOT NULL DEFAULT true
);

CREATE TABLE alert_rule_scopes (
    rule_id   bigint NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    client_id bigint REFERENCES clients (id) ON DELETE CASCADE,
    site_id   bigint REFERENCES sites (id) ON DELETE CASCADE,
    CHECK (client_id IS NOT NULL OR site_id IS NOT NULL)
);
CREATE INDEX alert_rule_scopes_rule ON alert_rule_scopes (rule_id);

CREATE TABLE alerts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id     bigint NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    device_id   bigint NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    state       alert_state NOT NULL DEFAULT 'firing',
    value       real,
    fired_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    ticket_id   bigint REFERENCES tickets (id) ON DELETE SET NULL
);
CREATE INDEX alerts_open ON alerts (device_id, rule_id) WHERE state <> 'resolved';
CREATE INDEX alerts_fired ON alerts (fired_at DESC);

CREATE TABLE alert_acknowledgements (
    alert_id  bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    member_id bigint NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    note      text,
    at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, member_id)
);

CREATE TABLE notification_channels (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind      channel_kind NOT NULL,
    name      text NOT NULL UNIQUE,
    target    text NOT NULL,
    enabled   boolean NOT NULL DEFAULT true
);

CREATE TABLE escalation_policies (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name   text NOT NULL UNIQUE
);

CREATE TABLE escalation_steps (
    policy_id     bigint NOT NULL REFERENCES escalation_policies (id) ON DELETE CASCADE,
    position      integer NOT NULL,
    channel_id    bigint NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    delay_seconds integer NOT NULL DEFAULT 0 CHECK (delay_seconds >= 0),
    PRIMARY KEY (policy_id, position)
);

CREATE TABLE notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    channel_id bigint NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    delivered  boolean,
    error      text
);
CREATE INDEX notifications_alert ON notifications (alert_id);

CREATE TABLE maintenance_windows (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id   bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    starts_at timestamptz NOT NULL,
    ends_at   timestamptz NOT NULL,
    reason    text,
    CHECK (ends_at > starts_at)
);
