-- Issue 30: the details of a citation (the warden's note, the photos) open for whoever
-- holds the ticket, not for anyone who registers the plate. The list on a driver's plates
-- shows the citation number, so the number and the plate prove nothing; the ticket also
-- carries this random code (8 characters, Crockford base32 for new citations), as a cash
-- slip does. Citations issued before get a random code of 8 hexadecimal characters, read
-- back from the warden's handheld (`GET /v1/warden/violations/{number}`) if a ticket is
-- reprinted.
ALTER TABLE violations ADD COLUMN verification_code TEXT;
UPDATE violations SET verification_code = upper(substr(md5(random()::text || id::text || clock_timestamp()::text), 1, 8))
    WHERE verification_code IS NULL;
