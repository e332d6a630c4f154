-- Undo expand: the candidate rolled back before contract; drop what expand added.
ALTER TABLE customers DROP COLUMN first_name;
ALTER TABLE customers DROP COLUMN last_name;
