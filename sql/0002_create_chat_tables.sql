-- Chat sessions, their messages, and the per-session workflow state machine.
CREATE TABLE chat_sessions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      text,
    status     text NOT NULL DEFAULT 'active'
               CONSTRAINT chat_sessions_status_check CHECK (status IN ('active', 'archived', 'deleted')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chat_messages (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id bigint NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    role       text NOT NULL
               CONSTRAINT chat_messages_role_check CHECK (role IN ('user', 'assistant', 'system')),
    content    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One workflow state per session; the UNIQUE also serves lookups by session.
CREATE TABLE workflow_state (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id bigint NOT NULL UNIQUE REFERENCES chat_sessions (id) ON DELETE CASCADE,
    state      jsonb NOT NULL DEFAULT '{}',
    step       integer NOT NULL DEFAULT 0
               CONSTRAINT workflow_state_step_check CHECK (step >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Loading a conversation reads its messages in order.
CREATE INDEX chat_messages_session_id_created_at_idx ON chat_messages (session_id, created_at);
-- Listing a user's sessions, and the FK check when a user is deleted.
CREATE INDEX chat_sessions_user_id_idx ON chat_sessions (user_id);
