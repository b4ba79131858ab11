-- Pulse: engagement surveys and their results.
CREATE TYPE question_kind AS ENUM ('scale', 'choice', 'text', 'nps');
CREATE TYPE survey_state AS ENUM ('draft', 'open', 'closed', 'archived');

CREATE TABLE surveys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title       text NOT NULL,
    description text,
    state       survey_state NOT NULL DEFAULT 'draft',
    anonymous   boolean NOT NULL DEFAULT true,
    created_by  bigint REFERENCES members (id) ON DELETE SET NULL,
    opens_at    timestamptz,
    closes_at   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (closes_at IS NULL OR opens_at IS NULL OR closes_at > opens_at)
);
CREATE INDEX surveys_state ON surveys (state, opens_at);

CREATE TABLE survey_questions (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    survey_id bigint NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    position  integer NOT NULL,
    kind      question_kind NOT NULL,
    prompt    text NOT NULL,
    required  boolean NOT NULL DEFAULT false,
    UNIQUE (survey_id, position)
);

CREATE TABLE question_options (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    question_id bigint NOT NULL REFERENCES survey_questions (id) ON DELETE CASCADE,
    position    integer NOT NULL,
    label       text NOT NULL,
    UNIQUE (question_id, position)
);

CREATE TABLE survey_audiences (
    survey_id bigint NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    team_id   bigint NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    PRIMARY KEY (survey_id, team_id)
);

CREATE TABLE survey_responses (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    survey_id    bigint NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    member_id    bigint REFERENCES members (id) ON DELETE SET NULL,
    submitted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX survey_responses_survey ON survey_responses (survey_id, submitted_at);

CREATE TABLE survey_answers (
    response_id bigint NOT NULL REFERENCES survey_responses (id) ON DELETE CASCADE,
    question_id bigint NOT NULL REFERENCES survey_questions (id) ON DELETE CASCADE,
    option_id   bigint REFERENCES question_options (id) ON DELETE SET NULL,
    score       smallint CHECK (score BETWEEN 0 AND 10),
    text_value  text,
    PRIMARY KEY (response_id, question_id)
);

CREATE TABLE pulse_scores (
    team_id    bigint NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    week       date NOT NULL,
    score      numeric(5, 2) NOT NULL,
    responses  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (team_id, week)
);

CREATE TABLE kudos (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_id    bigint NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    to_id      bigint NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    message    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (from_id <> to_id)
);
CREATE INDEX kudos_to ON kudos (to_id, created_at DESC);
