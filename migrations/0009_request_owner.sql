-- Node requests belong to the token that made them (issue 12): a requester token sees and
-- releases only its own requests, whatever `requester` label its body chose. The owner is the
-- token itself, by the hex SHA-256 the API knows it by (API tokens: api_tokens.token_hash;
-- the admin token: the hash of the configured one), so a token revoked and made again under
-- the same name does not inherit its predecessor's requests. NULL: no token owns it (only
-- admins see it).
ALTER TABLE requests ADD COLUMN owner_token_sha256 TEXT;

-- Requests made before this migration: owned by the token that still has the name they were
-- made with (`created_by` is the token's name). The admin's, and those of tokens since
-- revoked, stay NULL.
UPDATE requests
SET owner_token_sha256 = (SELECT token_hash FROM api_tokens WHERE api_tokens.name = requests.created_by)
WHERE owner_token_sha256 IS NULL;
