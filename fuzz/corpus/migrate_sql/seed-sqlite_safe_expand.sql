ALTER TABLE users ADD COLUMN full_name TEXT;
ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
UPDATE users SET full_name = name WHERE full_name IS NULL;
CREATE INDEX IF NOT EXISTS users_full_name ON users (full_name);
CREATE TRIGGER users_sync_new AFTER INSERT ON users WHEN NEW.full_name IS NULL
BEGIN
  UPDATE users SET full_name = NEW.name WHERE id = NEW.id;
END;
CREATE TRIGGER users_sync_old AFTER INSERT ON users WHEN NEW.name IS NULL
BEGIN
  UPDATE users SET name = NEW.full_name WHERE id = NEW.id;
END;
