-- This is the migration that was forgotten in production: the code shipped reading wps.modules_data
-- before this ran, and every request failed with UndefinedColumn (column "modules_data" does not exist).
ALTER TABLE wps ADD COLUMN modules_data JSONB NOT NULL DEFAULT '{}';

CREATE INDEX wps_modules_data_gin_idx ON wps USING gin (modules_data);

COMMENT ON COLUMN wps.modules_data IS 'Per-module configuration of the workflow package, keyed by module name';
