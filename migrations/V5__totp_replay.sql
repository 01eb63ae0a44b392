-- The time step of the last TOTP code accepted: a code is good once.
ALTER TABLE users ADD COLUMN totp_last_step bigint;
