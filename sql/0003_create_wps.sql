-- Workflow packages. modules_data arrives in 0004.
CREATE TABLE wps (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    owner_id   bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT wps_owner_id_name_key UNIQUE (owner_id, name)
);
