-- Children first; the indexes go with their tables, dropped explicitly to mirror the migration.
DROP INDEX chat_sessions_user_id_idx;
DROP INDEX chat_messages_session_id_created_at_idx;
DROP TABLE workflow_state;
DROP TABLE chat_messages;
DROP TABLE chat_sessions;
