INSERT INTO deliveries
    (seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code, headers, normalize_error, hash)
SELECT seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code, headers::jsonb, normalize_error, hash
FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::bytea[], $6::bytea[],
            $7::text[], $8::int[], $9::text[], $10::text[], $11::bytea[])
    AS u (seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code, headers, normalize_error, hash)
