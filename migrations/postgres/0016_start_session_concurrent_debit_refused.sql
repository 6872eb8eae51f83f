-- Issue 30: a wallet that a concurrent debit emptied refuses the start without an ERROR in
-- PostgreSQL's log. Migration 0015's function read the wallet before writing, but a debit of the
-- same wallet committed between that read and the function's own update (two starts of one
-- driver at two points, or a start and an extension) still raised IPK05: two ERROR lines in a
-- full test run. The writes now run in a block that catches IPK05: the block's subtransaction is
-- rolled back (session, ledger transaction, receipt, balances), and the refusal is returned
-- with the balance the debit found, the key taken back, as for a refusal found by the read.
-- The signature and the answers are those of migration 0015, so nodes of the previous release
-- call the replaced function unchanged (they map a returned 'IPK05:<balance>' already).

CREATE OR REPLACE FUNCTION iparking_try_start_session2(
    p_session_id BIGINT, p_driver_id BIGINT, p_plate TEXT, p_vehicle_class TEXT,
    p_point_id BIGINT, p_point_code TEXT, p_tariff_id BIGINT, p_channel TEXT,
    p_started_at TIMESTAMPTZ, p_paid_until TIMESTAMPTZ, p_expires_at TIMESTAMPTZ,
    p_turns INTEGER, p_amount BIGINT, p_notify_phone TEXT, p_now TIMESTAMPTZ,
    p_entry_kind TEXT, p_quote TEXT,
    p_kinds TEXT[], p_refs TEXT[], p_amounts BIGINT[], p_channels TEXT[], p_points BIGINT[],
    p_lock_order INTEGER[],
    p_scope TEXT, p_key TEXT, p_request_hash TEXT, p_status INTEGER, p_response TEXT
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    v_capacity INTEGER;
    v_status TEXT;
    v_code TEXT;
    v_live BIGINT;
    v_stale BIGINT;
    v_live_id BIGINT;
    v_txn BIGINT;
    v_account BIGINT;
    v_accounts BIGINT[] := array_fill(NULL::BIGINT, ARRAY[cardinality(p_kinds)]);
    v_balance BIGINT;
    i INTEGER;
BEGIN
    -- The key first: a concurrent retry waits here, then fails on the key (or, if this call
    -- refuses and takes its key back, goes on to its own checks).
    INSERT INTO idempotency_keys (scope, key, request_hash, status, response, created_at)
        VALUES (p_scope, p_key, p_request_hash, p_status, p_response, p_now)
        ON CONFLICT (scope, key) DO NOTHING;
    IF NOT FOUND THEN
        -- The key is used (committed, or waited for): the caller replays it. Found without
        -- a unique violation, so nothing is written to the server's log.
        RETURN 'IPK10';
    END IF;
    -- The plate's lock, then the point's row (the same order and locks as every other path;
    -- FOR NO KEY UPDATE: a foreign key's check on the point never waits for it).
    PERFORM pg_advisory_xact_lock(hashtext('plate:' || p_plate));
    SELECT capacity, status, code INTO v_capacity, v_status, v_code FROM points WHERE id = p_point_id FOR NO KEY UPDATE;
    IF NOT FOUND OR v_status <> 'open' THEN
        RETURN iparking_refusal(p_scope, p_key, 'IPK01');
    END IF;
    IF v_code <> p_point_code THEN
        RETURN iparking_refusal(p_scope, p_key, 'IPK09');
    END IF;
    -- One statement; aggregate filters, not WHERE clauses, on expires_at (see migration 0009).
    SELECT here.live, here.stale + plate.stale, plate.live_id INTO v_live, v_stale, v_live_id FROM
        (SELECT COUNT(*) FILTER (WHERE expires_at > p_now) AS live, COUNT(*) FILTER (WHERE expires_at <= p_now) AS stale
         FROM sessions WHERE point_id = p_point_id AND status = 'active') AS here,
        (SELECT MIN(id) FILTER (WHERE expires_at > p_now) AS live_id, COUNT(*) FILTER (WHERE expires_at <= p_now) AS stale
         FROM sessions WHERE plate = p_plate AND status = 'active') AS plate;
    IF v_live_id IS NOT NULL THEN
        RETURN iparking_refusal(p_scope, p_key, 'IPK02:' || v_live_id);
    END IF;
    IF v_live >= v_capacity THEN
        RETURN iparking_refusal(p_scope, p_key, 'IPK03');
    END IF;
    IF v_stale > 0 THEN
        RETURN iparking_refusal(p_scope, p_key, 'IPK09');
    END IF;
    -- The wallet, read before anything is written: a start it cannot pay is refused with the
    -- balance, without an error. (A debit committed between this read and the update below is
    -- caught by the block that follows.)
    FOR i IN 1 .. cardinality(p_kinds) LOOP
        IF p_kinds[i] = 'wallet' AND p_amounts[i] < 0 THEN
            SELECT COALESCE((SELECT balance FROM accounts WHERE kind = p_kinds[i] AND ref = p_refs[i]), 0)
                INTO v_balance;
            IF v_balance + p_amounts[i] < 0 THEN
                RETURN iparking_refusal(p_scope, p_key, 'IPK05:' || v_balance);
            END IF;
        END IF;
    END LOOP;

    -- The writes, in a block: a debit that a concurrent one made impossible since the read above
    -- rolls back the block's writes and is refused like the read's refusal.
    BEGIN
        -- The session, its ledger transaction and its receipt: one statement.
        WITH s AS (
            INSERT INTO sessions (id, driver_id, plate, vehicle_class, point_id, tariff_id, channel, status,
                                  started_at, paid_until, expires_at, turns, amount_charged, notify_phone, created_at)
            VALUES (p_session_id, p_driver_id, p_plate, p_vehicle_class, p_point_id, p_tariff_id, p_channel, 'active',
                    p_started_at, p_paid_until, p_expires_at, p_turns, p_amount, p_notify_phone, p_now)
            RETURNING id
        ), t AS (
            INSERT INTO ledger_transactions (kind, session_id, created_at) SELECT p_entry_kind, s.id, p_now FROM s
            RETURNING id
        ), r AS (
            INSERT INTO session_purchases (session_id, turns, amount, paid_until, quote, transaction_id, created_at)
            SELECT p_session_id, p_turns, p_amount, p_paid_until, p_quote, t.id, p_now FROM t
        )
        SELECT t.id INTO v_txn FROM t;

        -- Balances, in the lock order: a debit never creates a wallet nor takes it below zero.
        FOREACH i IN ARRAY p_lock_order LOOP
            IF p_kinds[i] = 'wallet' AND p_amounts[i] < 0 THEN
                UPDATE accounts SET balance = balance + p_amounts[i]
                    WHERE kind = p_kinds[i] AND ref = p_refs[i] AND balance + p_amounts[i] >= 0
                    RETURNING id INTO v_account;
            ELSE
                INSERT INTO accounts (kind, ref, balance, created_at) VALUES (p_kinds[i], p_refs[i], p_amounts[i], p_now)
                    ON CONFLICT (kind, ref) DO UPDATE SET balance = accounts.balance + excluded.balance
                    WHERE accounts.kind <> 'wallet' OR accounts.balance + excluded.balance >= 0
                    RETURNING id INTO v_account;
            END IF;
            IF NOT FOUND THEN
                SELECT COALESCE((SELECT balance FROM accounts WHERE kind = p_kinds[i] AND ref = p_refs[i]), 0)
                    INTO v_balance;
                -- Raised to roll the block back; caught below, so never in the server's log.
                RAISE EXCEPTION '%', v_balance USING ERRCODE = 'IPK05';
            END IF;
            v_accounts[i] := v_account;
        END LOOP;
        INSERT INTO postings (transaction_id, account_id, amount, channel, point_id)
            SELECT v_txn, u.account, u.amount, u.channel, u.point
            FROM unnest(v_accounts, p_amounts, p_channels, p_points) WITH ORDINALITY AS u(account, amount, channel, point, n)
            ORDER BY u.n;
    EXCEPTION WHEN SQLSTATE 'IPK05' THEN
        RETURN iparking_refusal(p_scope, p_key, 'IPK05:' || SQLERRM);
    END;
    RETURN NULL;
END $$;
