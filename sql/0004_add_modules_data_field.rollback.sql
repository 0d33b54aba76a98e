COMMENT ON COLUMN wps.modules_data IS NULL;
DROP INDEX wps_modules_data_gin_idx;
ALTER TABLE wps DROP COLUMN modules_data;
