"""Offline downloads (premium): the domain (``service``) and its SQL (``repository``)."""
