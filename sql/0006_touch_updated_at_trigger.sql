-- Keep workflow_state.updated_at current on every UPDATE, whoever writes the row.
CREATE FUNCTION workflow_state_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- Statements inside the dollar-quoted body end with semicolons; they are part of one CREATE.
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER workflow_state_touch_updated_at
    BEFORE UPDATE ON workflow_state
    FOR EACH ROW
    EXECUTE FUNCTION workflow_state_touch_updated_at();
