"""Access tokens: :mod:`shared.tokens.keyset` signs (auth only), :mod:`shared.tokens.verify` verifies
(every service). Kept empty so that a verifying service imports nothing of the signing side."""
