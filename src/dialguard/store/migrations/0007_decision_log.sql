-- The supervisors' decision log (GET /v1/decisions): newest first, a page at a time by the keyset
-- (decided_at, id), optionally for one campaign or one reason. Each filter the API offers is one index
-- range read from the cursor on, however deep the page.
--
-- (decided_at, id) replaces the index on decided_at alone: it serves the same range reads and orders
-- ties, so a page boundary between two decisions of the same instant is exact.
-- The number filter uses decisions_number (0001); a verdict filter walks the time index (a verdict is
-- half the rows or so: an index of its own would cost every insert for no gain).
--
-- Built without CONCURRENTLY (a migration runs in a transaction): inserts into decisions wait while
-- these build (about 40 s per 10 million rows on a 2-core VM, bench/decisions_page.py). On a large
-- log, run `dialguard migrate` in a quiet hour.
CREATE INDEX decisions_decided_at_id ON decisions (decided_at, id);
DROP INDEX decisions_decided_at;
CREATE INDEX decisions_campaign_decided_at ON decisions (campaign, decided_at, id);
CREATE INDEX decisions_reason_decided_at ON decisions (reason, decided_at, id);
