-- Tenants added through the API: applying a config file that does not
-- list one keeps it (a file that lists it takes it over).
ALTER TABLE tenants ADD COLUMN from_api INTEGER NOT NULL DEFAULT 0;
