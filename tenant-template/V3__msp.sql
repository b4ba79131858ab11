-- MSP: the managed-service provider's clients, their sites, devices, contracts and tickets.
CREATE TYPE ticket_priority AS ENUM ('low', 'normal', 'high', 'urgent');
CREATE TYPE ticket_state AS ENUM ('new', 'open', 'waiting', 'resolved', 'closed');

CREATE TABLE clients (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    external_ref text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE client_contacts (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id bigint NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    name      text NOT NULL,
    email     text,
    phone     text,
    is_primary boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX client_contacts_one_primary ON client_contacts (client_id) WHERE is_primary;

CREATE TABLE sites (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id bigint NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    name      text NOT NULL,
    address   text,
    timezone  text NOT NULL DEFAULT 'UTC',
    UNIQUE (client_id, name)
);

CREATE TABLE devices (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id     bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    hostname    text NOT NULL,
    kind        text NOT NULL,
    os          text,
    serial      text,
    last_seen_at timestamptz,
    UNIQUE (site_id, hostname)
);
CREATE INDEX devices_last_seen ON devices (last_seen_at);

CREATE TABLE device_metrics (
    device_id bigint NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL,
    cpu       real,
    memory    real,
    disk      real,
    PRIMARY KEY (device_id, at)
);

CREATE TABLE contracts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id   bigint NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    name        text NOT NULL,
    starts_on   date NOT NULL,
    ends_on     date,
    monthly_fee numeric(12, 2) NOT NULL DEFAULT 0,
    CHECK (ends_on IS NULL OR ends_on >= starts_on)
);

CREATE TABLE tickets (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id   bigint NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    device_id   bigint REFERENCES devices (id) ON DELETE SET NULL,
    assignee_id bigint REFERENCES members (id) ON DELETE SET NULL,
    title       text NOT NULL,
    priority    ticket_priority NOT NULL DEFAULT 'normal',
    state       ticket_state NOT NULL DEFAULT 'new',
    opened_at   timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz
);
CREATE INDEX tickets_open ON tickets (client_id, state) WHERE state NOT IN ('resolved', 'closed');
CREATE INDEX tickets_assignee ON tickets (assignee_id, state);

CREATE TABLE ticket_comments (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    author_id bigint REFERENCES members (id) ON DELETE SET NULL,
    body      text NOT NULL,
    internal  boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ticket_comments_ticket ON ticket_comments (ticket_id, created_at);

CREATE TABLE time_entries (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id  bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    member_id  bigint NOT NULL REFERENCES members (id),
    minutes    integer NOT NULL CHECK (minutes > 0),
    billable   boolean NOT NULL DEFAULT true,
    logged_on  date NOT NULL DEFAULT current_date
);
