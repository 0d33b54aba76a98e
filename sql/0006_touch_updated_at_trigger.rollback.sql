DROP TRIGGER workflow_state_touch_updated_at ON workflow_state;
DROP FUNCTION workflow_state_touch_updated_at();
