"""People and the law in the admin service: accounts (roles, disabling), data requests
(export, erasure) and the audit log (``views`` for HTTP, ``repository`` for SQL)."""
