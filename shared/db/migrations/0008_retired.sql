-- Retired number. 0008 once held the per-account advisory locks of the usage-summary triggers; they were folded
-- into 0007_usage_summary.sql. A database that applied that 0008 keeps it in schema_migrations, and the migrator
-- skips any file whose number is recorded there, so a new migration numbered 0008 would never run on it. This
-- placeholder keeps the number taken: the next migration is 0009.
SELECT 1;
