"""Outgoing webhooks: signing (Standard Webhooks), payloads, the SSRF guard and the delivery
worker. Endpoints are managed through services/webhooks.py."""
