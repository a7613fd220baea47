"""Load tests (Locust) and the edge benchmark against nginx."""
