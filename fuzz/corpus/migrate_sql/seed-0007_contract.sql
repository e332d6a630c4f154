-- Contract: only once no running revision reads or writes full_name.
ALTER TABLE customers DROP COLUMN full_name;
