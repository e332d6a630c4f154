-- Expand: add the new columns next to the old one. Old revisions keep writing full_name;
-- new revisions write all three. Nothing here breaks a running revision.
ALTER TABLE customers ADD COLUMN first_name TEXT;
ALTER TABLE customers ADD COLUMN last_name TEXT;
UPDATE customers
   SET first_name = substr(full_name, 1, instr(full_name || ' ', ' ') - 1),
       last_name  = trim(substr(full_name, instr(full_name || ' ', ' ')))
 WHERE first_name IS NULL;
