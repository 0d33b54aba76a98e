-- Runs of a workflow package, the variables each run produced, and which steps read which variable.
CREATE TABLE execution_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wp_id       bigint NOT NULL REFERENCES wps (id) ON DELETE CASCADE,
    status      text NOT NULL DEFAULT 'running'
                CONSTRAINT execution_history_status_check
                CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CONSTRAINT execution_history_finished_check CHECK (finished_at IS NULL OR finished_at >= started_at)
);

CREATE TABLE execution_variables (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id bigint NOT NULL REFERENCES execution_history (id) ON DELETE CASCADE,
    name         text NOT NULL,
    value        jsonb,
    CONSTRAINT execution_variables_execution_id_name_key UNIQUE (execution_id, name)
);

-- (execution_id, name) lookups are served by the UNIQUE constraint's own index; no second index.

-- "The latest runs of this package": filter by package, newest first.
CREATE INDEX execution_history_wp_id_started_at_idx ON execution_history (wp_id, started_at DESC);

-- A reference is a step of the run reading a variable: it belongs to the variable and goes with it.
CREATE TABLE variable_references (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    variable_id  bigint NOT NULL REFERENCES execution_variables (id) ON DELETE CASCADE,
    execution_id bigint NOT NULL REFERENCES execution_history (id) ON DELETE CASCADE,
    step_name    text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- "Which variables did this run's steps read": filter by run, then by variable.
CREATE INDEX variable_references_execution_id_variable_id_idx
    ON variable_references (execution_id, variable_id);
-- Serves the ON DELETE CASCADE from execution_variables.
CREATE INDEX variable_references_variable_id_idx ON variable_references (variable_id);
