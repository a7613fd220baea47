"""The admin service: catalogue, ingest, ads, billing and reports."""
