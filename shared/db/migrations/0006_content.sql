-- Published versions of the content catalogue: catalogue.yaml and the templates, as text.
-- Downloadable files (PDFs, videos) stay in the content store directory.
CREATE TABLE content_versions (
    version      int         PRIMARY KEY,
    checksum     text        NOT NULL,
    files        jsonb       NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
