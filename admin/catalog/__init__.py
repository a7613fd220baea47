"""The catalogue as the admin service manages it: films, their publish state, and
categories (``views`` for HTTP, ``service`` for the changes, ``repository`` for SQL)."""
