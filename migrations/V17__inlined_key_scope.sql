-- key_scope() is called for every delivery the writer stores (its key's row in delivery_keys,
-- store/sql/store_batch.sql). Declared STRICT around a CASE (which is not strict), PostgreSQL
-- could not inline it: each batch ran it as a SQL function of its own, parsed and planned once
-- per statement and called once per row (`fmgr_sql`, 3% of the writer's backend CPU in perf).
-- Without STRICT it is inlined into the plan as the CASE itself. A NULL key_source gives NULL
-- either way (CASE NULL WHEN ... ELSE NULL), so nothing it returns changes.
ALTER FUNCTION key_scope(text) CALLED ON NULL INPUT;
