/**
 * A superuser's event trigger, out of any agent's reach, that records the maintenance_work_mem in
 * force inside each CREATE INDEX (observer.builds): what a deferred index build was given.
 */
export const BUILD_OBSERVER_SQL = `
CREATE SCHEMA observer;
CREATE TABLE observer.builds (identity text, setting text);
CREATE FUNCTION observer.record() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  INSERT INTO observer.builds SELECT object_identity, current_setting('maintenance_work_mem') FROM pg_event_trigger_ddl_commands();
END $$;
CREATE EVENT TRIGGER observe_builds ON ddl_command_end WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION observer.record();`;
