-- Flow control (flue_core.flow): taking from the ready pool under per-key concurrency and rate limits,
-- in priority order, and folding debounced starts. Operations as in runs.sql.
--
-- A bucket is a workflow and one value of a key (NULL a value of its own), as the text bucket() makes.
-- take() counts the busy runs and the recent starts of its limited workflows' buckets first (few: the
-- runs held by workers and the starts of one window), then reads the pool in order without the
-- buckets that are full, so that a long queue behind a full bucket is passed over by the index scan,
-- never taken into the loop; a bucket that fills up during the call is left out of the next read.

CREATE FUNCTION @F@bucket(p_wf text, p_key text) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT length(p_wf) || ':' || p_wf || COALESCE(':' || p_key, '') $$;

-- Fold a debounced admission (op is admit's) into the pending run of its workflow and key: the run
-- takes the new input, wake-up time, priority and flow keys (they follow the input; it is scheduled,
-- so not in the ready pool, and the indexes of runs move with them), and a run_debounced event says
-- so. A run asked to cancel is not pending (runs_debounce leaves it out). answer is NULL when no run is
-- pending (it was woken or asked to cancel meanwhile: FOR UPDATE reads its row again).
CREATE FUNCTION @F@fold(op jsonb, f text[], OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE r @S@.runs;
BEGIN
  changed := '{}';
  SELECT * INTO r FROM @S@.runs
  WHERE workflow = op->>3 AND debounce_key = op->>20 AND status = 'scheduled' AND NOT cancel_requested FOR UPDATE;
  IF NOT FOUND THEN RETURN; END IF;
  UPDATE @S@.runs SET input = op->>5, wake_at = (op->>9)::timestamptz, priority = (op->>17)::integer,
      concurrency_key = op->>18, rate_key = op->>19
  WHERE run_id = r.run_id;
  PERFORM @F@write_event(r.run_id, 'run_debounced', op->>21, op->>6, f);
  PERFORM @F@remember(op->>1, r.run_id);
  SELECT * INTO r FROM @S@.runs WHERE run_id = r.run_id;
  changed := ARRAY[r.run_id, ':ready'];  -- its wake-up time moved
  answer := json_build_array('old', @REC(r)@);
END $$;

-- Room left in the buckets of one limited workflow w ([name, concurrency, rate, per]) at p_now, as
-- {bucket: room} for concurrency and {bucket: [room, oldest counted start, per, workflow, key]} for the
-- rate; buckets left out have all their room.
CREATE FUNCTION @F@room(w jsonb, p_now timestamptz, OUT busy jsonb, OUT recent jsonb) LANGUAGE plpgsql STABLE AS $$
BEGIN
  busy := '{}';
  recent := '{}';
  IF w->1 <> 'null'::jsonb THEN
    SELECT COALESCE(jsonb_object_agg(@F@bucket(w->>0, k), (w->>1)::integer - n), '{}') INTO busy FROM (
      SELECT concurrency_key AS k, count(*) AS n FROM @S@.runs
      WHERE workflow = w->>0 AND status IN ('queued', 'running') AND owner IS NOT NULL GROUP BY concurrency_key
    ) AS counted;
  END IF;
  IF w->2 <> 'null'::jsonb THEN  -- starts in the window, and runs taken that have not started (as if now)
    SELECT COALESCE(jsonb_object_agg(@F@bucket(w->>0, k),
        jsonb_build_array((w->>2)::integer - n, oldest, (w->>3)::float8, w->>0, k)), '{}') INTO recent FROM (
      SELECT k, count(*) AS n, min(at) AS oldest FROM (
        SELECT rate_key AS k, started_at AS at FROM @S@.runs
        WHERE workflow = w->>0 AND started_at IS NOT NULL AND started_at > p_now - make_interval(secs => (w->>3)::float8)
        UNION ALL
        SELECT rate_key, p_now FROM @S@.runs
        WHERE workflow = w->>0 AND status IN ('queued', 'running') AND owner IS NOT NULL AND status = 'queued'
          AND started_at IS NULL
      ) AS starts GROUP BY k
    ) AS counted;
  END IF;
END $$;

-- op: take [opid, owner, limit, [[workflow, concurrency, rate, per]...], only (ids) or null, now]
-- answer: [[record...], retry_at or null]. The pool is read highest priority first, then oldest (SKIP
-- LOCKED: runs another worker is taking are passed over); a limited workflow's buckets are counted under
-- its lock. The taken runs keep this call's id (take_op), so that the call, sent again after a lost
-- connection, gets the same runs.
CREATE FUNCTION @F@op_take(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE
  v_owner text := op->>2; v_limit integer := (op->>3)::integer; v_now timestamptz := (op->>6)::timestamptz;
  v_taken text[] := '{}'; v_names text[]; v_only text[]; v_limits jsonb := '{}'; w jsonb;
  v_busy jsonb := '{}'; v_recent jsonb := '{}'; b jsonb; r jsonb;
  v_full text[] := '{}'; v_spent text[] := '{}';  -- buckets without room: concurrency, rate
  c record; v_lim jsonb; v_cb text; v_rb text; v_room integer; v_rate_room integer;
  v_read integer; v_passed boolean; v_retry timestamptz; v_at timestamptz;
BEGIN
  changed := '{}';
  IF again AND EXISTS (SELECT 1 FROM @S@.runs WHERE take_op = op->>1 AND status = 'queued' AND owner = v_owner) THEN
    SELECT json_build_array(COALESCE(json_agg(@REC(r)@ ORDER BY r.priority DESC, r.ready_at, r.run_id), '[]'), NULL)
    INTO answer FROM @S@.runs r WHERE r.take_op = op->>1 AND r.status = 'queued' AND r.owner = v_owner;
    RETURN;
  END IF;
  v_names := ARRAY(SELECT e->>0 FROM jsonb_array_elements(op->4) AS e);
  IF op->5 <> 'null'::jsonb THEN v_only := ARRAY(SELECT jsonb_array_elements_text(op->5)); END IF;
  FOR w IN SELECT value FROM jsonb_array_elements(op->4)
      WHERE value->1 <> 'null'::jsonb OR value->2 <> 'null'::jsonb ORDER BY value->>0 LOOP  -- in one order: no deadlock
    PERFORM @F@lock_workflow(w->>0);
    v_limits := v_limits || jsonb_build_object(w->>0, w);
    SELECT room.busy || v_busy, room.recent || v_recent INTO v_busy, v_recent FROM @F@room(w, v_now) AS room;
  END LOOP;
  IF v_limits = '{}' THEN  -- no limits: the first runs of these workflows
    v_taken := ARRAY(SELECT q.run_id FROM @S@.ready q
                     WHERE q.workflow = ANY(v_names) AND (v_only IS NULL OR q.run_id = ANY(v_only))
                     ORDER BY q.priority DESC, q.ready_at, q.run_id LIMIT v_limit FOR UPDATE SKIP LOCKED);
  ELSE
    v_full := ARRAY(SELECT key FROM jsonb_each_text(v_busy) WHERE value::integer <= 0);
    v_spent := ARRAY(SELECT key FROM jsonb_each(v_recent) WHERE (value->>0)::integer <= 0);
    LOOP
      v_read := 0;
      v_passed := false;
      FOR c IN SELECT q.run_id, q.workflow, q.concurrency_key, q.rate_key, q.started FROM @S@.ready q
          WHERE q.workflow = ANY(v_names) AND (v_only IS NULL OR q.run_id = ANY(v_only))
            AND NOT (q.run_id = ANY(v_taken))
            AND NOT (@F@bucket(q.workflow, q.concurrency_key) = ANY(v_full))
            AND (q.started OR NOT (@F@bucket(q.workflow, q.rate_key) = ANY(v_spent)))
          ORDER BY q.priority DESC, q.ready_at, q.run_id LIMIT v_limit - cardinality(v_taken) FOR UPDATE SKIP LOCKED LOOP
        v_read := v_read + 1;
        v_lim := v_limits->c.workflow;
        v_room := NULL;
        v_rate_room := NULL;
        IF v_lim IS NOT NULL AND v_lim->1 <> 'null'::jsonb THEN
          v_cb := @F@bucket(c.workflow, c.concurrency_key);
          v_room := COALESCE((v_busy->>v_cb)::integer, (v_lim->>1)::integer);
        END IF;
        IF v_lim IS NOT NULL AND v_lim->2 <> 'null'::jsonb AND NOT c.started THEN
          v_rb := @F@bucket(c.workflow, c.rate_key);
          v_rate_room := COALESCE((v_recent->v_rb->>0)::integer, (v_lim->>2)::integer);
        END IF;
        IF v_room <= 0 OR v_rate_room <= 0 THEN  -- filled by a run taken before it in this call
          v_passed := true;
          CONTINUE;
        END IF;
        v_taken := v_taken || c.run_id;
        IF v_room IS NOT NULL THEN
          v_busy := v_busy || jsonb_build_object(v_cb, v_room - 1);
          IF v_room = 1 THEN v_full := v_full || v_cb; END IF;
        END IF;
        IF v_rate_room IS NOT NULL THEN
          v_recent := v_recent || jsonb_build_object(v_rb, jsonb_build_array(v_rate_room - 1,
              COALESCE(v_recent->v_rb->>1, v_now::text), (v_lim->>3)::float8, c.workflow, c.rate_key));
          IF v_rate_room = 1 THEN v_spent := v_spent || v_rb; END IF;
        END IF;
      END LOOP;
      -- Read again only when runs were passed over because a bucket filled: it is left out now.
      EXIT WHEN NOT v_passed OR cardinality(v_taken) >= v_limit;
    END LOOP;
    -- When to look again: the earliest time a spent rate bucket that holds runs back has room.
    FOR b IN SELECT value FROM jsonb_each(v_recent) WHERE (value->>0)::integer <= 0 LOOP
      v_at := (b->>1)::timestamptz + make_interval(secs => (b->>2)::float8);
      CONTINUE WHEN v_retry IS NOT NULL AND v_at >= v_retry;
      IF EXISTS (SELECT 1 FROM @S@.ready q
                 WHERE q.workflow = b->>3 AND NOT q.started
                   AND (q.rate_key = b->>4 OR (b->>4 IS NULL AND q.rate_key IS NULL))
                   AND NOT (q.run_id = ANY(v_taken)) AND (v_only IS NULL OR q.run_id = ANY(v_only))
                   AND NOT (@F@bucket(q.workflow, q.concurrency_key) = ANY(v_full))) THEN
        v_retry := v_at;
      END IF;
    END LOOP;
  END IF;
  IF cardinality(v_taken) = 0 THEN
    answer := json_build_array('[]'::json, v_retry);
    RETURN;
  END IF;
  DELETE FROM @S@.ready WHERE run_id = ANY(v_taken);
  WITH taken AS (
    UPDATE @S@.runs AS r SET owner = v_owner, take_op = op->>1 WHERE r.run_id = ANY(v_taken)
    RETURNING r.run_id, @REC(r)@ AS record
  )
  SELECT json_build_array(json_agg(record ORDER BY array_position(v_taken, run_id)), v_retry) INTO answer FROM taken;
END $$;
