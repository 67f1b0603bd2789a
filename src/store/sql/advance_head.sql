-- The ledger head's compare-and-swap: $1, $2 the head the batch was written from, $3, $4, $5 the
-- head it leaves. Every SET expression reads the row before the update, so either all three
-- move or none does; the answer says which.
UPDATE ledger_head
SET seq = CASE WHEN seq = $1 AND hash = $2 THEN $3 ELSE seq END,
    hash = CASE WHEN seq = $1 AND hash = $2 THEN $4 ELSE hash END,
    at = CASE WHEN seq = $1 AND hash = $2 THEN $5 ELSE at END
RETURNING seq = $3 AND hash = $4
