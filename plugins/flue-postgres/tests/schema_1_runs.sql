-- The run store's operations (flue_postgres/store.py): the rules of flue_core/store.py (RunStore), which
-- states them, over the tables of schema.sql. A process sends its writes as batches: one call of
-- @S@.apply(origin, frames, ops) is one transaction, one commit and one NOTIFY for every operation in it.
--
-- ops is a JSON array of operations, each [name, opid, arguments...]; apply returns the JSON text
-- [[answer of each operation...], [changed keys...]]. Changed keys are run ids and ':ready', ':cancels',
-- ':schedules' (flue_core.store.READY...); they are announced on the channel @C@ as one or more
-- payloads "<origin> <key> <key>...", so the writing process skips its own.
--
-- opid is unique per call of a writing operation: a batch whose connection broke before its answer came
-- is sent again (p_again), and an operation that is not a no-op the second time recognises its opid
-- (admit, take, claim and suspend keep it in the run's row, the rarer ones their answer in @S@.ops for
-- a while).
--
-- Events the store writes itself are built from frames, the pieces of flue_core.store.event_json around
-- the run id, the index, the time and the type (the one definition of the wire shape, cut in Python):
-- f[1] || run_id || f[2] || index || f[3] || when || f[4] || type || f[5] || data || '}'.
--
-- Every operation on a run locks its row first (FOR UPDATE), so operations on one run from any process
-- are serialised; the ready pool and the due-time index are scanned with SKIP LOCKED.

-- Two macros, written out in place by flue_postgres.schema.sql(): REC of a row variable is the run's
-- record as the JSON array flue_postgres.rows.record_of reads; FINISHED of a status is whether it has
-- ended. (A SQL function taking a whole row costs ~0.1 ms a call: it is not inlined.)

-- Store an event at the end of the run's stream; return the index the next one takes.
CREATE FUNCTION @S@.write_event(p_id text, p_type text, p_data text, p_when text, f text[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
  UPDATE @S@.runs SET next_index = next_index + 1 WHERE run_id = p_id RETURNING next_index - 1 INTO n;
  INSERT INTO @S@.events (run_id, idx, data)
  VALUES (p_id, n, f[1] || p_id || f[2] || n || f[3] || p_when || f[4] || p_type || f[5] || p_data || '}');
  RETURN n + 1;
END $$;

-- A signal_received event for each signal received and not announced yet.
CREATE FUNCTION @S@.announce(p_id text, p_when text, f text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE s record;
BEGIN
  FOR s IN SELECT seq, announcement FROM @S@.signals WHERE run_id = p_id AND NOT announced ORDER BY seq LOOP
    PERFORM @S@.write_event(p_id, 'signal_received', s.announcement, p_when, f);
  END LOOP;
  IF FOUND THEN
    UPDATE @S@.signals SET announced = true WHERE run_id = p_id AND NOT announced;
  END IF;
END $$;

-- A queued run goes to the ready pool.
CREATE FUNCTION @S@.to_pool(p_id text, p_wf text, p_ready timestamptz) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  UPDATE @S@.runs SET owner = NULL, ready_at = p_ready WHERE run_id = p_id;
  INSERT INTO @S@.ready (run_id, workflow, ready_at) VALUES (p_id, p_wf, p_ready)
  ON CONFLICT (run_id) DO UPDATE SET ready_at = excluded.ready_at;
END $$;

-- A scheduled or waiting run becomes queued in the ready pool.
CREATE FUNCTION @S@.awaken(p_id text, p_wf text, p_ready timestamptz) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  UPDATE @S@.runs SET status = 'queued', wake_at = NULL, waiting_for = NULL WHERE run_id = p_id;
  PERFORM @S@.to_pool(p_id, p_wf, p_ready);
END $$;

CREATE FUNCTION @S@.children_done(p_ids text[]) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT NOT EXISTS (SELECT 1 FROM @S@.runs WHERE run_id = ANY(p_ids) AND NOT @FINISHED(status)@)
$$;

CREATE FUNCTION @S@.remembered(p_op text) RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN (SELECT answer FROM @S@.ops WHERE opid = p_op);
END $$;

CREATE FUNCTION @S@.remember(p_op text, p_answer text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO @S@.ops (opid, answer) VALUES (p_op, p_answer) ON CONFLICT (opid) DO NOTHING;
END $$;

-- Runs of a capped workflow are counted under this lock, so that two processes never both take the
-- last place.
CREATE FUNCTION @S@.lock_workflow(p_wf text) RETURNS void LANGUAGE sql
AS $$ SELECT pg_advisory_xact_lock(hashtextextended('@N@:cap:' || p_wf, 0)) $$;

-- op: admit [opid, id, wf, key, input, created, owner, parent, start_at, waiting_for, carrier,
--            first_event, rerun_of, steps [[name, value]...], claim, started]
CREATE FUNCTION @S@.op_admit(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE
  v_id text := op->>2; v_wf text := op->>3; v_key text := op->>4; v_owner text := op->>7;
  v_created timestamptz := (op->>6)::timestamptz; v_start timestamptz := (op->>9)::timestamptz;
  v_claim boolean := (op->>15)::boolean; r @S@.runs; n integer;
BEGIN
  changed := '{}';
  INSERT INTO @S@.runs (run_id, workflow, status, input, key, attempt, created_at, started_at, owner,
      parent_run_id, wake_at, waiting_for, carrier, ready_at, rerun_of, admit_op, claim_op)
  VALUES (v_id, v_wf, CASE WHEN v_start IS NOT NULL THEN 'scheduled' WHEN v_claim THEN 'running' ELSE 'queued' END,
      op->>5, v_key, CASE WHEN v_claim THEN 1 ELSE 0 END, v_created, (op->>16)::timestamptz,
      CASE WHEN v_start IS NULL THEN v_owner END, op->>8, v_start, op->>10, op->>11, v_created, op->>13,
      op->>1, CASE WHEN v_claim THEN op->>1 END)
  ON CONFLICT DO NOTHING;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n = 0 THEN  -- the key is bound (also when both admissions raced), the id is taken, or this very call came twice
    IF v_key IS NOT NULL THEN
      SELECT * INTO r FROM @S@.runs WHERE workflow = v_wf AND key = v_key;
    END IF;
    IF r.run_id IS NULL THEN
      SELECT * INTO r FROM @S@.runs WHERE run_id = v_id;
      IF r.admit_op IS DISTINCT FROM op->>1 THEN
        answer := json_build_object('error', 'run_id_conflict');
        RETURN;
      END IF;
    END IF;
    IF r.admit_op = op->>1 THEN answer := json_build_array('new'); ELSE answer := json_build_array('old', @REC(r)@); END IF;
    RETURN;
  END IF;
  INSERT INTO @S@.events (run_id, idx, data) VALUES (v_id, 0, op->>12);
  IF jsonb_array_length(op->14) > 0 THEN  -- the steps a re-run takes over, in their order
    INSERT INTO @S@.steps (run_id, name, value)
    SELECT v_id, s.value->>0, s.value->>1 FROM jsonb_array_elements(op->14) WITH ORDINALITY AS s(value, n) ORDER BY s.n
    ON CONFLICT DO NOTHING;
  END IF;
  IF v_start IS NOT NULL THEN
    changed := ARRAY[v_id, ':ready'];  -- a wake-up time was set: workers look at their timers again
  ELSIF v_owner IS NULL THEN
    INSERT INTO @S@.ready (run_id, workflow, ready_at) VALUES (v_id, v_wf, v_created);
    changed := ARRAY[v_id, ':ready'];
  ELSE
    changed := ARRAY[v_id];
  END IF;
  answer := json_build_array('new');
END $$;

-- op: claim [opid, id, owner, limit, when]
CREATE FUNCTION @S@.op_claim(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE v_id text := op->>2; v_owner text := op->>3; v_limit integer := (op->>4)::integer; r @S@.runs; n integer;
BEGIN
  changed := '{}';
  SELECT * INTO r FROM @S@.runs WHERE run_id = v_id FOR UPDATE;
  IF NOT FOUND THEN RETURN; END IF;
  IF r.status = 'running' AND r.owner = v_owner AND r.claim_op = op->>1 THEN  -- this very call, sent twice
    answer := json_build_array(@REC(r)@, r.next_index, r.claim_resumed);
    RETURN;
  END IF;
  IF r.status <> 'queued' OR r.owner IS DISTINCT FROM v_owner OR r.owner IS NULL THEN RETURN; END IF;
  IF v_limit IS NOT NULL THEN
    PERFORM @S@.lock_workflow(r.workflow);
    SELECT count(*) INTO n FROM @S@.runs WHERE workflow = r.workflow AND status = 'running';
    IF n >= v_limit THEN  -- back to the pool, in its place: a worker takes it once there is room
      PERFORM @S@.to_pool(v_id, r.workflow, r.ready_at);
      changed := ARRAY[':ready'];
      RETURN;
    END IF;
  END IF;
  PERFORM @S@.announce(v_id, op->>5, f);
  UPDATE @S@.runs SET status = 'running', attempt = attempt + CASE WHEN resume THEN 0 ELSE 1 END,
      started_at = COALESCE(started_at, (op->>5)::timestamptz), claim_op = op->>1, claim_resumed = resume, resume = false
  WHERE run_id = v_id RETURNING * INTO r;
  changed := ARRAY[v_id];
  answer := json_build_array(@REC(r)@, r.next_index, r.claim_resumed);
END $$;

-- op: requeue [opid, id, owner, held_by, interrupted, when]
CREATE FUNCTION @S@.op_requeue(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE v_id text := op->>2; v_owner text := op->>3; v_held text := op->>4; v_int boolean := (op->>5)::boolean; r @S@.runs;
BEGIN
  changed := '{}';
  IF again AND @S@.remembered(op->>1) IS NOT NULL THEN
    SELECT * INTO r FROM @S@.runs WHERE run_id = v_id;
    answer := @REC(r)@;
    RETURN;
  END IF;
  SELECT * INTO r FROM @S@.runs WHERE run_id = v_id FOR UPDATE;
  IF NOT FOUND OR r.status <> 'running' OR (v_held IS NOT NULL AND r.owner IS DISTINCT FROM v_held) THEN RETURN; END IF;
  UPDATE @S@.runs SET status = 'queued', owner = v_owner, ready_at = (op->>6)::timestamptz, resume = v_int,
      recoveries = recoveries + CASE WHEN v_int THEN 1 ELSE 0 END
  WHERE run_id = v_id;
  PERFORM @S@.announce(v_id, op->>6, f);
  IF v_owner IS NULL THEN
    PERFORM @S@.to_pool(v_id, r.workflow, (op->>6)::timestamptz);
    changed := ARRAY[v_id, ':ready'];
  ELSE
    changed := ARRAY[v_id];
  END IF;
  PERFORM @S@.remember(op->>1, '1');
  SELECT * INTO r FROM @S@.runs WHERE run_id = v_id;
  answer := @REC(r)@;
END $$;

-- op: suspend [opid, id, owner, waiting_for, kind, name, run_ids, wake_at, when, run_waiting data]
CREATE FUNCTION @S@.op_suspend(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE v_id text := op->>2; v_kind text := op->>5; r @S@.runs; v_satisfied boolean := false; n integer;
BEGIN
  changed := '{}';
  SELECT * INTO r FROM @S@.runs WHERE run_id = v_id FOR UPDATE;
  IF NOT FOUND THEN RETURN; END IF;
  IF r.status = 'waiting' AND r.suspend_op = op->>1 THEN
    answer := json_build_array(true, r.next_index, @REC(r)@);
    RETURN;
  END IF;
  IF r.status <> 'running' OR r.owner IS DISTINCT FROM op->>3 THEN RETURN; END IF;
  PERFORM @S@.announce(v_id, op->>9, f);
  changed := ARRAY[v_id];
  IF v_kind = 'signal' THEN
    v_satisfied := EXISTS (SELECT 1 FROM @S@.signals WHERE run_id = v_id AND name = op->>6 AND NOT delivered);
  ELSIF v_kind = 'children' THEN
    v_satisfied := @S@.children_done(ARRAY(SELECT jsonb_array_elements_text(op->7)));
  END IF;
  IF r.cancel_requested OR v_satisfied THEN
    SELECT * INTO r FROM @S@.runs WHERE run_id = v_id;
    answer := json_build_array(false, r.next_index, @REC(r)@);
    RETURN;
  END IF;
  UPDATE @S@.runs SET status = 'waiting', owner = NULL, wake_at = (op->>8)::timestamptz, waiting_for = op->>4,
      resume = v_kind <> 'retry', suspend_op = op->>1
  WHERE run_id = v_id;
  n := @S@.write_event(v_id, 'run_waiting', op->>10, op->>9, f);
  SELECT * INTO r FROM @S@.runs WHERE run_id = v_id;
  changed := ARRAY[v_id, ':ready'];
  answer := json_build_array(true, n, @REC(r)@);
END $$;

-- op: finish [opid, id, status, ended_at, result, error, only_from, held_by, now, run_end data before its duration]
CREATE FUNCTION @S@.op_finish(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE
  v_id text := op->>2; v_ended timestamptz := (op->>4)::timestamptz; v_held text := op->>8;
  r @S@.runs; p @S@.runs; w jsonb;
BEGIN
  changed := '{}';
  SELECT * INTO r FROM @S@.runs WHERE run_id = v_id FOR UPDATE;
  IF NOT FOUND THEN RETURN; END IF;
  IF @FINISHED(r.status)@
     OR (op->7 <> 'null'::jsonb AND NOT (op->7 ? r.status))
     OR (v_held IS NOT NULL AND r.owner IS DISTINCT FROM v_held) THEN
    answer := @REC(r)@;
    RETURN;
  END IF;
  PERFORM @S@.announce(v_id, op->>4, f);
  PERFORM @S@.write_event(v_id, 'run_end',
    op->>10 || COALESCE(((extract(epoch FROM v_ended - r.started_at) * 1000)::bigint)::text, 'null') || '}', op->>4, f);
  UPDATE @S@.runs SET status = op->>3, ended_at = v_ended, result = op->>5, error = op->>6, wake_at = NULL,
      waiting_for = NULL
  WHERE run_id = v_id RETURNING * INTO r;
  DELETE FROM @S@.ready WHERE run_id = v_id;
  changed := ARRAY[v_id];
  answer := @REC(r)@;
  IF r.parent_run_id IS NOT NULL THEN  -- wake the parent when it waits for its children and this was the last
    SELECT * INTO p FROM @S@.runs WHERE run_id = r.parent_run_id AND status = 'waiting' FOR UPDATE;
    IF FOUND AND p.waiting_for IS NOT NULL THEN
      w := p.waiting_for::jsonb;
      IF w->>'kind' = 'children' AND (w->'runIds') ? v_id
         AND @S@.children_done(ARRAY(SELECT jsonb_array_elements_text(w->'runIds'))) THEN
        PERFORM @S@.awaken(p.run_id, p.workflow, (op->>9)::timestamptz);
        changed := changed || ARRAY[p.run_id, ':ready'];
      END IF;
    END IF;
  END IF;
END $$;

-- op: cancel [opid, id]
CREATE FUNCTION @S@.op_cancel(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE r @S@.runs;
BEGIN
  changed := '{}';
  SELECT * INTO r FROM @S@.runs WHERE run_id = op->>2 FOR UPDATE;
  IF NOT FOUND THEN RETURN; END IF;
  IF NOT @FINISHED(r.status)@ AND NOT r.cancel_requested THEN
    UPDATE @S@.runs SET cancel_requested = true WHERE run_id = r.run_id RETURNING * INTO r;
    changed := ARRAY[r.run_id, ':cancels'];
  END IF;
  answer := @REC(r)@;
END $$;

-- op: take [opid, owner, limit, [[workflow, cap or null]...], only (ids) or null]
-- The pool is scanned oldest first (SKIP LOCKED: runs another worker is taking are passed over); a
-- capped workflow's runs are counted under its lock. The taken runs keep this call's id (take_op), so
-- that the call, sent again after a lost connection, gets the same runs.
CREATE FUNCTION @S@.op_take(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE
  v_owner text := op->>2; v_limit integer := (op->>3)::integer; v_taken text[] := '{}'; v_names text[];
  v_only text[]; v_room jsonb := '{}'; w jsonb; v_busy integer; c record; v_left integer;
BEGIN
  changed := '{}';
  IF again AND EXISTS (SELECT 1 FROM @S@.runs WHERE take_op = op->>1 AND status = 'queued' AND owner = v_owner) THEN
    SELECT COALESCE(json_agg(@REC(r)@ ORDER BY r.ready_at, r.run_id), '[]') INTO answer
    FROM @S@.runs r WHERE r.take_op = op->>1 AND r.status = 'queued' AND r.owner = v_owner;
    RETURN;
  END IF;
  v_names := ARRAY(SELECT e->>0 FROM jsonb_array_elements(op->4) AS e);
  IF op->5 <> 'null'::jsonb THEN v_only := ARRAY(SELECT jsonb_array_elements_text(op->5)); END IF;
  FOR w IN SELECT value FROM jsonb_array_elements(op->4) WHERE value->1 <> 'null'::jsonb LOOP
    PERFORM pg_advisory_xact_lock(hashtextextended('@N@:cap:' || (w->>0), 0));
    SELECT count(*) INTO v_busy FROM @S@.runs
    WHERE workflow = w->>0 AND status IN ('queued', 'running') AND owner IS NOT NULL;
    v_room := v_room || jsonb_build_object(w->>0, (w->>1)::integer - v_busy);
  END LOOP;
  IF v_room = '{}' AND v_only IS NULL THEN  -- no caps: the oldest runs of these workflows
    v_taken := ARRAY(SELECT q.run_id FROM @S@.ready q WHERE q.workflow = ANY(v_names)
                     ORDER BY q.ready_at, q.run_id LIMIT v_limit FOR UPDATE SKIP LOCKED);
  ELSE
    FOR c IN SELECT q.run_id, q.workflow FROM @S@.ready q
        WHERE q.workflow = ANY(v_names) AND (v_only IS NULL OR q.run_id = ANY(v_only))
        ORDER BY q.ready_at, q.run_id FOR UPDATE SKIP LOCKED LOOP
      v_left := (v_room->>c.workflow)::integer;
      CONTINUE WHEN v_left IS NOT NULL AND v_left <= 0;
      IF v_left IS NOT NULL THEN v_room := jsonb_set(v_room, ARRAY[c.workflow], to_jsonb(v_left - 1)); END IF;
      v_taken := v_taken || c.run_id;
      EXIT WHEN cardinality(v_taken) >= v_limit;
    END LOOP;
  END IF;
  IF cardinality(v_taken) = 0 THEN
    answer := '[]';
    RETURN;
  END IF;
  DELETE FROM @S@.ready WHERE run_id = ANY(v_taken);
  WITH taken AS (
    UPDATE @S@.runs AS r SET owner = v_owner, take_op = op->>1 WHERE r.run_id = ANY(v_taken)
    RETURNING r.run_id, @REC(r)@ AS record
  )
  SELECT json_agg(record ORDER BY array_position(v_taken, run_id)) INTO answer FROM taken;
END $$;

-- op: wake [opid, now, limit]
CREATE FUNCTION @S@.op_wake(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE r record; n integer := 0;
BEGIN
  changed := '{}';
  FOR r IN SELECT run_id, workflow, wake_at FROM @S@.runs
      WHERE wake_at IS NOT NULL AND wake_at <= (op->>2)::timestamptz AND status IN ('scheduled', 'waiting')
      ORDER BY wake_at, run_id LIMIT (op->>3)::integer FOR UPDATE SKIP LOCKED LOOP
    PERFORM @S@.awaken(r.run_id, r.workflow, r.wake_at);
    changed := changed || r.run_id;
    n := n + 1;
  END LOOP;
  IF n > 0 THEN changed := changed || ':ready'::text; END IF;
  answer := to_json(n);
END $$;

-- op: append [opid, [[id, contiguous, [[index, event JSON]...]]...]]: an event lands only at its run's next
-- free position of an unfinished run, so one sent twice, or after a gap, is dropped. contiguous: the
-- indexes follow each other, so the events land together or (from the first that is not next) not at all.
CREATE FUNCTION @S@.op_append(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE item jsonb; e jsonb; v_id text; v_status text; n integer; v_first integer; v_count integer;
BEGIN
  changed := '{}';
  FOR item IN SELECT value FROM jsonb_array_elements(op->2) LOOP
    v_id := item->>0;
    SELECT status, next_index INTO v_status, n FROM @S@.runs WHERE run_id = v_id FOR UPDATE;
    IF NOT FOUND OR @FINISHED(v_status)@ THEN CONTINUE; END IF;
    v_count := jsonb_array_length(item->2);
    v_first := (item->2->0->>0)::integer;
    IF (item->>1)::boolean AND v_first <= n AND v_first + v_count > n THEN
      INSERT INTO @S@.events (run_id, idx, data)
      SELECT v_id, (e.value->>0)::integer, e.value->>1 FROM jsonb_array_elements(item->2) AS e(value)
      WHERE (e.value->>0)::integer >= n;
      n := v_first + v_count;
    ELSIF NOT (item->>1)::boolean THEN
      v_first := n;
      FOR e IN SELECT value FROM jsonb_array_elements(item->2) LOOP
        IF (e->>0)::integer = n THEN
          INSERT INTO @S@.events (run_id, idx, data) VALUES (v_id, n, e->>1);
          n := n + 1;
        END IF;
      END LOOP;
      IF n = v_first THEN CONTINUE; END IF;
    ELSE
      CONTINUE;
    END IF;
    UPDATE @S@.runs SET next_index = n WHERE run_id = v_id;
    changed := changed || v_id;
  END LOOP;
END $$;

-- op: save_step [opid, id, name, value]: the first result saved under a name stays.
CREATE FUNCTION @S@.op_save_step(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
BEGIN
  changed := '{}';
  INSERT INTO @S@.steps (run_id, name, value)
  SELECT op->>2, op->>3, op->>4 WHERE EXISTS (SELECT 1 FROM @S@.runs WHERE run_id = op->>2)
  ON CONFLICT DO NOTHING;
END $$;

-- op: signal [opid, id, signal_id, name, key, data, announcement, step_value, delivered_data, sent_at, when]
CREATE FUNCTION @S@.op_signal(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE v_id text := op->>2; r @S@.runs; s @S@.signals; v_seq integer; w jsonb;
BEGIN
  changed := '{}';
  SELECT * INTO r FROM @S@.runs WHERE run_id = v_id FOR UPDATE;
  IF NOT FOUND THEN
    answer := json_build_object('error', 'run_not_found');
    RETURN;
  END IF;
  IF op->>5 IS NOT NULL THEN  -- before the run's end: a retried send gets the first answer, ended or not
    SELECT * INTO s FROM @S@.signals WHERE run_id = v_id AND key = op->>5;
    IF FOUND THEN
      answer := json_build_array(s.signal_id = op->>3, s.signal_id, s.name, s.data, @REC(r)@);
      RETURN;
    END IF;
  END IF;
  SELECT * INTO s FROM @S@.signals WHERE run_id = v_id AND signal_id = op->>3;
  IF FOUND THEN  -- this very call, sent twice
    answer := json_build_array(true, s.signal_id, s.name, s.data, @REC(r)@);
    RETURN;
  END IF;
  IF @FINISHED(r.status)@ THEN
    answer := json_build_object('error', 'run_finished', 'status', r.status);
    RETURN;
  END IF;
  SELECT COALESCE(max(seq), 0) + 1 INTO v_seq FROM @S@.signals WHERE run_id = v_id;
  INSERT INTO @S@.signals (run_id, seq, signal_id, name, data, key, sent_at, announcement, step_value, delivered_data)
  VALUES (v_id, v_seq, op->>3, op->>4, op->>6, op->>5, (op->>10)::timestamptz, op->>7, op->>8, op->>9);
  changed := ARRAY[v_id];
  IF r.status <> 'running' THEN
    PERFORM @S@.announce(v_id, op->>11, f);
  END IF;
  IF r.status = 'waiting' AND r.waiting_for IS NOT NULL THEN
    w := r.waiting_for::jsonb;
    IF w->>'kind' = 'signal' AND w->>'name' = op->>4 THEN
      PERFORM @S@.awaken(v_id, r.workflow, (op->>10)::timestamptz);
      changed := changed || ':ready'::text;
    END IF;
  END IF;
  SELECT * INTO r FROM @S@.runs WHERE run_id = v_id;
  answer := json_build_array(true, op->>3, op->>4, op->>6, @REC(r)@);
END $$;

-- op: take_signal [opid, id, owner, name, step, when, sent_by]
CREATE FUNCTION @S@.op_take_signal(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE v_id text := op->>2; r @S@.runs; s @S@.signals; v_kept text; n integer;
BEGIN
  changed := '{}';
  v_kept := CASE WHEN again THEN @S@.remembered(op->>1) END;
  IF v_kept IS NOT NULL THEN
    SELECT * INTO r FROM @S@.runs WHERE run_id = v_id;
    IF v_kept = '0' THEN
      answer := json_build_array(r.next_index, NULL);
    ELSE
      SELECT * INTO s FROM @S@.signals WHERE run_id = v_id AND seq = v_kept::integer;
      answer := json_build_array(r.next_index, s.signal_id, s.data, @REC(r)@);
    END IF;
    RETURN;
  END IF;
  SELECT * INTO r FROM @S@.runs WHERE run_id = v_id FOR UPDATE;
  IF NOT FOUND OR r.status <> 'running' OR r.owner IS DISTINCT FROM op->>3 THEN RETURN; END IF;
  PERFORM @S@.announce(v_id, op->>6, f);
  changed := ARRAY[v_id];
  SELECT * INTO s FROM @S@.signals WHERE run_id = v_id AND name = op->>4 AND NOT delivered
    AND (op->>7 IS NULL OR sent_at <= (op->>7)::timestamptz)
  ORDER BY seq LIMIT 1;
  IF NOT FOUND THEN
    PERFORM @S@.remember(op->>1, '0');
    SELECT * INTO r FROM @S@.runs WHERE run_id = v_id;
    answer := json_build_array(r.next_index, NULL);
    RETURN;
  END IF;
  UPDATE @S@.signals SET delivered = true WHERE run_id = v_id AND seq = s.seq;
  INSERT INTO @S@.steps (run_id, name, value) VALUES (v_id, op->>5, s.step_value) ON CONFLICT DO NOTHING;
  n := @S@.write_event(v_id, 'signal_delivered', s.delivered_data, op->>6, f);
  PERFORM @S@.remember(op->>1, s.seq::text);
  SELECT * INTO r FROM @S@.runs WHERE run_id = v_id;
  answer := json_build_array(n, s.signal_id, s.data, @REC(r)@);
END $$;

-- op: put_schedule [opid, name, definition, created_at, last_tick, replace]
CREATE FUNCTION @S@.op_put_schedule(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE s @S@.schedules;
BEGIN
  changed := '{}';
  INSERT INTO @S@.schedules (name, definition, created_at, last_tick) VALUES (op->>2, op->>3, op->>4, op->>5)
  ON CONFLICT (name) DO NOTHING;
  IF FOUND THEN
    changed := ARRAY[':schedules'];
    answer := json_build_array(true, op->>2, op->>3, op->>4, op->>5);
    RETURN;
  END IF;
  SELECT * INTO s FROM @S@.schedules WHERE name = op->>2 FOR UPDATE;
  IF (op->>6)::boolean THEN  -- the definition is replaced; created_at and last_tick stay
    UPDATE @S@.schedules SET definition = op->>3 WHERE name = op->>2 RETURNING * INTO s;
    changed := ARRAY[':schedules'];
  END IF;
  answer := json_build_array(false, s.name, s.definition, s.created_at, s.last_tick);
END $$;

-- op: delete_schedule [opid, name]
CREATE FUNCTION @S@.op_delete_schedule(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM @S@.schedules WHERE name = op->>2;
  answer := to_json(FOUND);
  changed := CASE WHEN FOUND THEN ARRAY[':schedules'] ELSE '{}' END;
END $$;

-- op: advance [opid, name, previous tick or null, tick]: compare and set.
CREATE FUNCTION @S@.op_advance(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
BEGIN
  changed := '{}';
  IF again AND @S@.remembered(op->>1) IS NOT NULL THEN
    answer := 'true';
    RETURN;
  END IF;
  UPDATE @S@.schedules SET last_tick = op->>4 WHERE name = op->>2 AND last_tick IS NOT DISTINCT FROM op->>3;
  IF FOUND THEN PERFORM @S@.remember(op->>1, '1'); END IF;
  answer := to_json(FOUND);
END $$;

-- op: beat [opid, worker, host, pid, pid_started, age_ms, running ids]: the server's clock dates the
-- heartbeat; the caller only says how old it is by its own clock.
CREATE FUNCTION @S@.op_beat(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
BEGIN
  changed := '{}';
  INSERT INTO @S@.workers (worker_id, host, pid, pid_started, beat)
  VALUES (op->>2, op->>3, (op->>4)::integer, op->>5, clock_timestamp() - make_interval(secs => (op->>6)::double precision / 1000))
  ON CONFLICT (worker_id) DO UPDATE SET host = excluded.host, pid = excluded.pid, pid_started = excluded.pid_started,
      beat = excluded.beat;
  SELECT COALESCE(json_agg(run_id), '[]') INTO answer FROM @S@.runs
  WHERE run_id IN (SELECT jsonb_array_elements_text(op->7))
    AND (owner IS DISTINCT FROM op->>2 OR cancel_requested OR @FINISHED(status)@);
END $$;

-- op: retire [opid, worker]
CREATE FUNCTION @S@.op_retire(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
BEGIN
  changed := '{}';
  DELETE FROM @S@.workers WHERE worker_id = op->>2;
END $$;

-- op: adopt [opid, owner, dead workers, workflows]
CREATE FUNCTION @S@.op_adopt(op jsonb, f text[], again boolean, OUT answer json, OUT changed text[]) LANGUAGE plpgsql AS $$
DECLARE v_kept text; v_ids text[];
BEGIN
  changed := '{}';
  v_kept := CASE WHEN again THEN @S@.remembered(op->>1) END;
  IF v_kept IS NOT NULL THEN
    SELECT COALESCE(json_agg(@REC(r)@), '[]') INTO answer FROM @S@.runs r WHERE r.run_id = ANY(string_to_array(v_kept, ' '));
    RETURN;
  END IF;
  DELETE FROM @S@.workers WHERE worker_id IN (SELECT jsonb_array_elements_text(op->3));
  WITH adopted AS (
    UPDATE @S@.runs AS r SET owner = op->>2
    WHERE r.status IN ('queued', 'running') AND r.workflow IN (SELECT jsonb_array_elements_text(op->4))
      AND r.owner IS NOT NULL AND r.owner NOT IN (SELECT worker_id FROM @S@.workers)
    RETURNING r.run_id, @REC(r)@ AS record
  )
  SELECT array_agg(run_id), COALESCE(json_agg(record), '[]') INTO v_ids, answer FROM adopted;
  IF v_ids IS NOT NULL THEN
    changed := v_ids;
    PERFORM @S@.remember(op->>1, array_to_string(v_ids, ' '));
  END IF;
END $$;

-- Announce the changed keys: payloads of at most ~7,900 bytes (NOTIFY's limit is 8,000), each the
-- origin then keys.
CREATE FUNCTION @S@.announce_changes(p_origin text, p_keys text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE v_key text; v_payload text := p_origin;
BEGIN
  FOR v_key IN SELECT DISTINCT k FROM unnest(p_keys) AS k LOOP
    IF octet_length(v_payload) + octet_length(v_key) > 7900 THEN
      PERFORM pg_notify(@C@, v_payload);
      v_payload := p_origin;
    END IF;
    v_payload := v_payload || ' ' || v_key;
  END LOOP;
  IF v_payload <> p_origin THEN PERFORM pg_notify(@C@, v_payload); END IF;
END $$;

-- A batch of operations in one transaction: see the top of this file.
CREATE FUNCTION @S@.apply(p_origin text, f text[], p_ops text, p_durable boolean, p_again boolean) RETURNS text LANGUAGE plpgsql AS $$
DECLARE op jsonb; a json; c text[]; v_answers json[] := '{}'; v_changed text[] := '{}';
BEGIN
  IF NOT p_durable THEN  -- see flue_postgres.writer.LAZY: losing such a batch to a crash costs nothing
    PERFORM set_config('synchronous_commit', 'off', true);
  END IF;
  FOR op IN SELECT value FROM jsonb_array_elements(p_ops::jsonb) LOOP
    CASE op->>0
      WHEN 'append' THEN SELECT * INTO a, c FROM @S@.op_append(op, f, p_again);
      WHEN 'admit' THEN SELECT * INTO a, c FROM @S@.op_admit(op, f, p_again);
      WHEN 'claim' THEN SELECT * INTO a, c FROM @S@.op_claim(op, f, p_again);
      WHEN 'finish' THEN SELECT * INTO a, c FROM @S@.op_finish(op, f, p_again);
      WHEN 'take' THEN SELECT * INTO a, c FROM @S@.op_take(op, f, p_again);
      WHEN 'save_step' THEN SELECT * INTO a, c FROM @S@.op_save_step(op, f, p_again);
      WHEN 'suspend' THEN SELECT * INTO a, c FROM @S@.op_suspend(op, f, p_again);
      WHEN 'wake' THEN SELECT * INTO a, c FROM @S@.op_wake(op, f, p_again);
      WHEN 'requeue' THEN SELECT * INTO a, c FROM @S@.op_requeue(op, f, p_again);
      WHEN 'beat' THEN SELECT * INTO a, c FROM @S@.op_beat(op, f, p_again);
      WHEN 'signal' THEN SELECT * INTO a, c FROM @S@.op_signal(op, f, p_again);
      WHEN 'take_signal' THEN SELECT * INTO a, c FROM @S@.op_take_signal(op, f, p_again);
      WHEN 'cancel' THEN SELECT * INTO a, c FROM @S@.op_cancel(op, f, p_again);
      WHEN 'adopt' THEN SELECT * INTO a, c FROM @S@.op_adopt(op, f, p_again);
      WHEN 'retire' THEN SELECT * INTO a, c FROM @S@.op_retire(op, f, p_again);
      WHEN 'put_schedule' THEN SELECT * INTO a, c FROM @S@.op_put_schedule(op, f, p_again);
      WHEN 'delete_schedule' THEN SELECT * INTO a, c FROM @S@.op_delete_schedule(op, f, p_again);
      WHEN 'advance' THEN SELECT * INTO a, c FROM @S@.op_advance(op, f, p_again);
    END CASE;
    v_answers := v_answers || a;
    v_changed := v_changed || c;
  END LOOP;
  IF cardinality(v_changed) > 0 THEN
    PERFORM @S@.announce_changes(p_origin, v_changed);
  END IF;
  RETURN json_build_array(array_to_json(v_answers), array_to_json(v_changed))::text;
END $$;

-- Delete up to p_limit runs that ended before p_cutoff, with everything of theirs; children of a parent
-- that has not ended stay (it may still wait for their results) and do not count.
CREATE FUNCTION @S@.prune(p_cutoff timestamptz, p_limit integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_ids text[];
BEGIN
  SELECT ARRAY(
    SELECT r.run_id FROM @S@.runs r
    WHERE r.ended_at IS NOT NULL AND r.ended_at < p_cutoff AND @FINISHED(r.status)@
      AND NOT EXISTS (SELECT 1 FROM @S@.runs p WHERE p.run_id = r.parent_run_id AND NOT @FINISHED(p.status)@)
    ORDER BY r.ended_at LIMIT p_limit FOR UPDATE OF r SKIP LOCKED
  ) INTO v_ids;
  IF cardinality(v_ids) = 0 THEN RETURN 0; END IF;
  DELETE FROM @S@.events WHERE run_id = ANY(v_ids);
  DELETE FROM @S@.steps WHERE run_id = ANY(v_ids);
  DELETE FROM @S@.signals WHERE run_id = ANY(v_ids);
  DELETE FROM @S@.ready WHERE run_id = ANY(v_ids);
  DELETE FROM @S@.runs WHERE run_id = ANY(v_ids);
  RETURN cardinality(v_ids);
END $$;
