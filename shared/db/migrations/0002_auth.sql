-- Auth keeps users and identities (0001) in PostgreSQL; its short-lived state (sign-in states, one-time
-- codes, refresh-token families, WebSocket tickets, rate-limit windows) lives in Firestore with TTLs.
-- Emails are stored lower-cased by auth; this index makes "one user per verified email" hold even if a
-- writer forgets to.
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));
