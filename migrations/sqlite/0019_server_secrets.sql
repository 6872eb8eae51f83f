-- Secrets every node of a deployment shares, made by the first node to need them: the key
-- that derives the check codes of session receipts (`IP-…` numbers). Never logged nor sent.
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
