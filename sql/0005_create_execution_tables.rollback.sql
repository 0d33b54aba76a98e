-- Children first, each table's indexes just before it.
DROP INDEX variable_references_variable_id_idx;
DROP INDEX variable_references_execution_id_variable_id_idx;
DROP TABLE variable_references;
DROP TABLE execution_variables;
DROP INDEX execution_history_wp_id_started_at_idx;
DROP TABLE execution_history;
