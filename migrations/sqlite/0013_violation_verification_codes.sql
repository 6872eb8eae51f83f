-- Issue 30: the details of a citation (the warden's note, the photos) open for whoever
-- holds the ticket, not for anyone who registers the plate. The list on a driver's plates
-- shows the citation number, so the number and the plate prove nothing; the ticket also
-- carries this random code (8 characters, Crockford base32 for new citations), as a cash
-- slip does. Citations issued before get a random code of 8 hexadecimal characters.
ALTER TABLE violations ADD COLUMN verification_code TEXT;
UPDATE violations SET verification_code = upper(hex(randomblob(4))) WHERE verification_code IS NULL;
