"""Ads for the free tier: inventory, decisioning, stitching plans and event tracking."""
