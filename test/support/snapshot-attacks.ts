/**
 * Workspace "evil"'s SECURITY DEFINER `power()`: sets every sequence of evil's snapshots to 1000.
 * Copied into a snapshot, it runs as the snapshot's owner (the snapshot role, which owns every
 * snapshot of evil), so a copy that lets agent code call it there lets the agent change a snapshot.
 */
export const POWER_OVER_SNAPSHOTS = `CREATE FUNCTION power() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$
  DECLARE s oid;
  BEGIN
    FOR s IN SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname LIKE 'project\\_evil\\_\\_snap\\_%' AND c.relkind = 'S' LOOP
      PERFORM setval(s, 1000);
    END LOOP;
  END $f$`;
